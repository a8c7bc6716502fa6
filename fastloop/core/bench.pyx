# The load generator's client loop (`fastloop bench`), one per thread.
#
# Theory of operation. A BenchLoop owns a poller and a fixed set of connection slots; it runs on
# one thread without the GIL and no other thread touches its slots. Each slot repeatedly runs a
# *batch* (one request, or --pipeline requests written back to back): begin() reserves the batch
# from the request budget, opens a connection if the slot has none, writes the batch, reads
# every response, and starts again. Every registration is edge-triggered, so reads and writes
# are drained until EAGAIN.
#
# Counting rules, so that the report adds up and matches the server:
#   * attempted counts connect() calls; each ends in exactly one of established or
#     connect_failed, or is still connecting when the run ends (then finish() asks the kernel
#     whether it got through, so `established` equals the server's accepted count).
#   * each request started ends in exactly one of requests (complete response), failed, or
#     unfinished (under way when a duration run ended).
#   * a connection the server closes counts once in peer_eof or peer_reset, whether or not a
#     request was lost with it (then also premature_eof or an ECONNRESET error).
#   * --no-keepalive sends "Connection: close" and waits for the server's EOF before the next
#     connection, so the server closes first and TIME_WAIT stays on its side.
#
# Latency is measured in ns from the moment a batch was due (rate mode: its slot in the
# schedule, so a stalled server cannot hide the requests it delayed; this is the coordinated
# omission correction of wrk2) and, separately, from the moment it really started. Without a
# rate the two are the same. Both include the connect when the batch had to open a connection.
#
# Slots are named by tokens (slot index | generation << 32): closing bumps the generation, so
# an event for the old connection is recognised as stale and dropped.

from libc.errno cimport EAGAIN, EINPROGRESS, EINTR, ECONNRESET, ENOMEM, EPIPE, EPROTO, ETIMEDOUT, errno
from libc.math cimport ceil
from libc.stdint cimport INT64_MAX, UINT64_MAX
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from posix.unistd cimport close


cdef enum:
    FB_WAIT_EVENTS = 512
    FB_RBUF_SIZE = 16384          # a connection's first read buffer; grows only for huge heads
    FB_MAX_LINE = 4096            # a chunk-size line longer than this is a protocol error
    FB_MAX_WAIT_MS = 100          # an idle wait re-checks the clock at least this often


# ---- the latency histogram (nogil) -------------------------------------------------------

cdef inline int fb_hist_index(uint64_t v) noexcept nogil:
    """The bucket of v: exact below FB_HIST_LINEAR, then FB_HIST_HALF buckets per octave."""
    if v < FB_HIST_LINEAR:
        return <int>v
    cdef int k = fl_msb64(v) - FB_HIST_SUB_BITS  # >= 1 here
    if k > FB_HIST_OCTAVES:
        return FB_HIST_LEN - 1
    return FB_HIST_LINEAR + (k - 1) * FB_HIST_HALF + <int>((v >> k) - FB_HIST_HALF)


cdef inline uint64_t fb_hist_high(int i) noexcept nogil:
    """The largest value bucket i holds (what a percentile reports, as HdrHistogram does)."""
    if i < FB_HIST_LINEAR:
        return <uint64_t>i
    cdef int j = i - FB_HIST_LINEAR
    cdef int k = j // FB_HIST_HALF + 1
    cdef uint64_t low = (<uint64_t>(FB_HIST_HALF + j % FB_HIST_HALF)) << k
    return low + ((<uint64_t>1 << k) - 1)


cdef inline void fb_hist_reset(fb_hist *h) noexcept nogil:
    memset(h, 0, sizeof(fb_hist))
    h.min = UINT64_MAX


cdef inline void fb_hist_record(fb_hist *h, int64_t ns) noexcept nogil:
    cdef uint64_t v = <uint64_t>ns if ns > 0 else 0
    h.counts[fb_hist_index(v)] += 1
    h.total += 1
    h.sum += v
    if v < h.min:
        h.min = v
    if v > h.max:
        h.max = v


cdef uint64_t fb_hist_percentile(const fb_hist *h, double p) noexcept nogil:
    """The value at or below which p percent of the recorded values lie (0 when empty)."""
    if h.total == 0:
        return 0
    cdef uint64_t want = <uint64_t>ceil(p / 100.0 * <double>h.total)
    if want < 1:
        want = 1
    if want > h.total:
        want = h.total
    cdef uint64_t seen = 0, v
    cdef int i
    for i in range(FB_HIST_LEN):
        seen += h.counts[i]
        if seen >= want:
            v = fb_hist_high(i)
            # Never beyond the extremes actually seen: p100 is the exact max.
            return h.max if v > h.max else (h.min if v < h.min else v)
    return h.max



cdef inline bint fb_skip_body(fb_conn *c) noexcept nogil:
    """Skips what arrived of the body (or chunk) c is in: True while more of it is to come."""
    cdef uint64_t take = c.rlen - c.rpos
    if take > <uint64_t>c.body_left:
        take = <uint64_t>c.body_left
    c.rpos += <uint32_t>take
    c.body_left -= <int64_t>take
    return c.body_left > 0

cdef class LatencyHistogram:
    """Latencies in ns, with three significant digits (see bench.pxd). Filled by the client
    loops without the GIL; merged and read from Python once a run is over."""

    def __cinit__(self):
        self.h = <fb_hist *>malloc(sizeof(fb_hist))
        if self.h == NULL:
            raise MemoryError()
        fb_hist_reset(self.h)

    def __dealloc__(self):
        free(self.h)

    cdef void merge_from(self, const fb_hist *o) noexcept nogil:
        cdef int i
        for i in range(FB_HIST_LEN):
            self.h.counts[i] += o.counts[i]
        self.h.total += o.total
        self.h.sum += o.sum
        if o.min < self.h.min:
            self.h.min = o.min
        if o.max > self.h.max:
            self.h.max = o.max

    def record(self, int64_t ns):
        fb_hist_record(self.h, ns)

    def merge(self, LatencyHistogram other not None):
        self.merge_from(other.h)

    def percentile(self, double p):
        """ns at percentile p (0-100]; 0 when nothing was recorded."""
        if not 0.0 <= p <= 100.0:
            raise ValueError("percentile must be within 0..100")
        return fb_hist_percentile(self.h, p)

    @property
    def count(self):
        return self.h.total

    @property
    def min(self):
        return self.h.min if self.h.total else 0

    @property
    def max(self):
        return self.h.max

    @property
    def mean(self):
        return self.h.sum / self.h.total if self.h.total else 0.0


def bench_now_ns():
    """The clock the client loops use (monotonic, ns): schedules and deadlines are on it."""
    return fl_now_ns()


# ---- small parsing helpers (nogil) ---------------------------------------------------------

cdef inline bint fb_ieq(const char *p, const char *lower, size_t n) noexcept nogil:
    """p[0..n) equals lower (lowercase ASCII), ignoring case."""
    cdef size_t i
    cdef char ch
    for i in range(n):
        ch = p[i]
        if 65 <= ch <= 90:
            ch = ch + 32
        if ch != lower[i]:
            return False
    return True


cdef inline bint fb_icontains(const char *p, size_t n, const char *lower, size_t m) noexcept nogil:
    cdef size_t i
    if m > n:
        return False
    for i in range(n - m + 1):
        if fb_ieq(p + i, lower, m):
            return True
    return False


cdef inline int64_t fb_find_head_end(const char *buf, uint32_t lo, uint32_t start,
                                     uint32_t end) noexcept nogil:
    """Index of the "\\r\\n\\r\\n" that ends a head within buf[lo..end) and whose last byte is
    at or after start (the bytes before were searched already), or -1."""
    cdef const char *p = buf + start
    cdef const char *stop = buf + end
    cdef const char *nl
    while p < stop:
        nl = <const char *>memchr(p, 10, stop - p)
        if nl == NULL:
            return -1
        if nl - buf >= lo + 3 and (nl - 1)[0] == 13 and (nl - 2)[0] == 10 and (nl - 3)[0] == 13:
            return (nl - buf) - 3
        p = nl + 1
    return -1


cdef inline int64_t fb_find_crlf(const char *buf, uint32_t start, uint32_t end) noexcept nogil:
    """Index of the first "\\r\\n" in buf[start..end), or -1."""
    cdef const char *nl = <const char *>memchr(buf + start, 10, end - start)
    if nl == NULL or nl == buf + start or (nl - 1)[0] != 13:
        return -1 if nl == NULL else -2
    return (nl - buf) - 1


cdef inline int fb_errno_slot(int err) noexcept nogil:
    return err if 0 <= err < FL_NERRNO else FL_NERRNO - 1


# ---- the client loop -------------------------------------------------------------------------

cdef class BenchLoop:
    """One client thread's connections, poller and counters. Built and read from Python;
    run() releases the GIL for the whole run."""

    def __cinit__(self, *args, **kwargs):
        memset(&self.st, 0, sizeof(fb_stats))
        self.st.conn_requests_min = UINT64_MAX
        self.lat = <fb_hist *>malloc(sizeof(fb_hist))
        self.lat_raw = <fb_hist *>malloc(sizeof(fb_hist))
        if self.lat == NULL or self.lat_raw == NULL:
            raise MemoryError()
        fb_hist_reset(self.lat)
        fb_hist_reset(self.lat_raw)
        cdef int rc = fl_poller_open(&self.poller)
        if rc < 0:
            raise_errno(-rc, "poller open")
        self.poller_open = True

    def __init__(self, *, int first_conn, int connections, int total_connections, int family,
                 bytes address, int port, list sources, bytes request, int pipeline=1,
                 bint keepalive=True, double rate=0.0, long long budget=-1,
                 double timeout=10.0, double connect_timeout=3.0, bint head=False,
                 tuple local_ports=None):
        """A loop for `connections` slots numbered from first_conn among total_connections.
        address is the packed target address (4 or 16 bytes), sources a list of packed source
        addresses of the same family, request one complete request. rate is in requests per
        second across all loops (0: closed loop), budget the requests this loop may start
        (-1: unlimited, the run ends by duration or stop())."""
        cdef int i, rc
        cdef bytes src
        if connections < 1 or pipeline < 1:
            raise ValueError("connections and pipeline must be at least 1")
        if len(address) not in (4, 16):
            raise ValueError("address must be a packed IPv4 or IPv6 address")
        self.cfg.flags = (FB_CFG_KEEPALIVE if keepalive else 0) | (FB_CFG_RATE if rate > 0 else 0)
        if head:
            self.cfg.flags |= FB_CFG_HEAD
        self.cfg.pipeline = pipeline
        self.cfg.timeout_ns = <int64_t>(timeout * 1e9)
        self.cfg.connect_timeout_ns = <int64_t>(connect_timeout * 1e9)
        self.cfg.retry_ns = 1000000  # 1 ms: a refused port must not turn the loop into a spin
        self.cfg.rate_interval_ns = 1e9 / rate if rate > 0 else 0.0
        self.cfg.total_conns = total_connections
        if local_ports is not None:
            self.cfg.port_lo, self.cfg.port_hi = local_ports
        self.budget = budget
        rc = fl_make_sockaddr(family, <const char *>address, port, &self.target)
        if rc < 0:
            raise_errno(-rc, "target address")
        self.target_len = rc
        self.family = family
        if sources:
            self.sources = <sockaddr_storage *>calloc(len(sources), sizeof(sockaddr_storage))
            self.source_lens = <int *>calloc(len(sources), sizeof(int))
            if self.sources == NULL or self.source_lens == NULL:
                raise MemoryError()
            for i, src in enumerate(sources):
                rc = fl_make_sockaddr(family, <const char *>src, 0, &self.sources[i])
                if rc < 0 or len(src) != len(address):
                    raise ValueError("source addresses must be of the target's family")
                self.source_lens[i] = rc
            self.nsources = len(sources)
            self.next_source = first_conn
        self.req_len = len(request)
        self.reqbuf = <char *>malloc(self.req_len * pipeline)
        if self.reqbuf == NULL:
            raise MemoryError()
        for i in range(pipeline):
            memcpy(self.reqbuf + i * self.req_len, <const char *>request, self.req_len)
        self.conns = <fb_conn *>calloc(connections, sizeof(fb_conn))
        if self.conns == NULL:
            raise MemoryError()
        self.nconns = connections
        for i in range(connections):
            self.conns[i].fd = -1
            self.conns[i].index = i
            self.conns[i].gindex = first_conn + i
        self.active = connections
        self.next_due = INT64_MAX

    def __dealloc__(self):
        cdef uint32_t i
        if self.conns != NULL:
            for i in range(self.nconns):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                free(self.conns[i].rbuf)
            free(self.conns)
        free(self.reqbuf)
        free(self.sources)
        free(self.source_lens)
        free(self.lat)
        free(self.lat_raw)
        if self.poller_open:
            fl_poller_close(&self.poller)

    def run(self, int64_t t0_ns, int64_t end_ns=0):
        """Runs until the budget is spent, end_ns (on bench_now_ns()'s clock; 0: none) or
        stop(). t0_ns anchors the rate schedule, the same for every loop of a run."""
        cdef int rc
        self.t0 = t0_ns
        self.end_ns = end_ns
        # SAFETY: the loop touches only this object's C fields and the buffers it owns; Python
        # keeps the object alive until run() returns, and other threads only set `stopping`
        # and wake the poller (both safe across threads).
        with nogil:
            rc = self.loop()
        if rc < 0:
            raise_errno(-rc, "poller wait")

    def stop(self):
        """Thread-safe: ends run() at its next turn; requests under way count as unfinished."""
        self.stopping = 1
        if self.poller_open:
            fl_poller_wake(&self.poller)

    def progress(self):
        """(requests, failed) so far. Read without a lock while the loop runs (each number is
        exact, the two may be from slightly different instants): for the live progress line."""
        return self.st.requests, self.st.failed

    def latency(self, bint corrected=True):
        """A copy of this loop's latency histogram."""
        cdef LatencyHistogram out = LatencyHistogram()
        out.merge_from(self.lat if corrected else self.lat_raw)
        return out

    def stats(self):
        """The counters once run() has returned, as a dict (errno tables by name)."""
        cdef fb_stats s = self.st
        cdef int i
        return {
            "requests": s.requests, "failed": s.failed, "sent": s.sent,
            "unfinished": self.unfinished,
            "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            "attempted": s.attempted, "established": s.established,
            "connect_failed": s.connect_failed, "peer_eof": s.peer_eof,
            "peer_reset": s.peer_reset, "closed": s.closed,
            "conn_requests_min": s.conn_requests_min if s.closed else 0,
            "conn_requests_max": s.conn_requests_max,
            "premature_eof": s.premature_eof,
            "status": {i: s.status[i] for i in range(FB_NSTATUS) if s.status[i]},
            "errors_connect": errno_table(s.err_connect),
            "errors_read": errno_table(s.err_read),
            "errors_write": errno_table(s.err_write),
            "finished_ns": self.finished_ns,
        }

    # ---- the loop (nogil) -----------------------------------------------------------------

    cdef int loop(self) noexcept nogil:
        cdef fl_event events[FB_WAIT_EVENTS]
        cdef int n, i, timeout_ms
        cdef int64_t wait_ns
        cdef fb_conn *c
        cdef uint32_t k
        self.now = fl_now_ns()
        for k in range(self.nconns):
            self.begin(&self.conns[k])
        while not self.stopping and self.active > 0:
            if self.end_ns and self.now >= self.end_ns:
                break
            wait_ns = self.next_due - self.now
            if self.end_ns and self.end_ns - self.now < wait_ns:
                wait_ns = self.end_ns - self.now
            if wait_ns >= FB_MAX_WAIT_MS * 1000000:
                timeout_ms = FB_MAX_WAIT_MS
            elif wait_ns > 0:
                # Rounded down: in the last millisecond before a due time the loop polls
                # without sleeping, so a scheduled request leaves on time, not up to 1 ms late.
                timeout_ms = <int>(wait_ns // 1000000)
            else:
                timeout_ms = 0
            n = fl_poller_wait(&self.poller, events, FB_WAIT_EVENTS, timeout_ms)
            if n < 0:
                self.finish()
                return n
            self.now = fl_now_ns()
            for i in range(n):
                if events[i].token == FL_WAKER_TOKEN:
                    fl_poller_wake_drain(&self.poller)
                    continue
                c = self.conn_for(events[i].token)
                if c != NULL:
                    self.on_event(c, events[i].mask)
            if self.now >= self.next_due:
                self.check_timers()
        self.finish()
        return 0

    cdef fb_conn *conn_for(self, uint64_t token) noexcept nogil:
        cdef uint32_t index = <uint32_t>(token & <uint64_t>0xffffffffU)
        if index >= self.nconns:
            return NULL
        cdef fb_conn *c = &self.conns[index]
        if c.fd < 0 or c.gen != <uint32_t>(token >> 32):
            return NULL  # stale: the connection this event was for is closed
        return c

    cdef void begin(self, fb_conn *c) noexcept nogil:
        """Starts the slot's next batch now, or schedules it, or retires the slot."""
        cdef int64_t intended = self.now
        cdef int batch
        if c.state == FB_DONE:
            return
        if self.end_ns and self.now >= self.end_ns:
            c.state = FB_IDLE  # the loop ends this turn
            return
        if self.budget == 0:
            self.close_conn(c)
            c.state = FB_DONE
            self.active -= 1
            return
        if self.cfg.flags & FB_CFG_RATE:
            intended = self.t0 + <int64_t>((<double>c.gindex + <double>c.seq * self.cfg.total_conns)
                                           * self.cfg.rate_interval_ns)
            if intended > self.now:
                self.wait_until(c, intended)
                return
            c.seq += 1
        batch = self.cfg.pipeline
        if self.budget > 0:
            if batch > self.budget:
                batch = <int>self.budget
            self.budget -= batch
        c.batch = batch
        c.inflight = batch
        c.wsent = 0
        c.intended_ns = intended
        c.started_ns = self.now
        c.rpos = c.rlen = c.scanned = 0  # nothing can be owed to a batch not yet written
        c.rstate = FB_R_HEAD
        if c.fd < 0:
            self.open_conn(c)
        else:
            c.state = FB_SENDING
            self.set_deadline(c, self.now + self.cfg.timeout_ns)
            self.send_more(c)

    cdef void open_conn(self, fb_conn *c) noexcept nogil:
        cdef int fd, rc, i
        self.st.attempted += 1
        c.state = FB_CONNECTING
        if c.rbuf == NULL:
            c.rbuf = <char *>malloc(FB_RBUF_SIZE)
            if c.rbuf == NULL:
                self.fail(c, self.st.err_connect, ENOMEM)
                return
            c.rcap = FB_RBUF_SIZE
        fd = fl_client_socket(self.family)
        if fd < 0:
            self.fail(c, self.st.err_connect, -fd)
            return
        c.fd = fd
        if self.nsources:
            i = self.next_source % self.nsources
            self.next_source += 1
            rc = fl_bind_source(fd, &self.sources[i], self.source_lens[i])
            if rc < 0:
                self.fail(c, self.st.err_connect, -rc)
                return
        if self.cfg.port_lo:
            rc = fl_set_local_port_range(fd, self.cfg.port_lo, self.cfg.port_hi)
            if rc < 0:
                self.fail(c, self.st.err_connect, -rc)
                return
        rc = fl_connect(fd, &self.target, self.target_len)
        if rc < 0 and rc != -EINPROGRESS:
            self.fail(c, self.st.err_connect, -rc)
            return
        cdef int prc = fl_poller_add(&self.poller, fd, (<uint64_t>c.gen << 32) | c.index)
        if prc < 0:
            self.fail(c, self.st.err_connect, -prc)
            return
        self.set_deadline(c, self.now + self.cfg.connect_timeout_ns)
        if rc == 0:
            self.on_connected(c)  # the writable edge that follows is then ignored

    cdef void on_connected(self, fb_conn *c) noexcept nogil:
        self.st.established += 1
        c.flags |= FB_F_CONNECTED
        c.nreq = 0
        c.state = FB_SENDING
        self.set_deadline(c, self.now + self.cfg.timeout_ns)
        self.send_more(c)

    cdef void on_event(self, fb_conn *c, int mask) noexcept nogil:
        cdef uint32_t gen = c.gen
        cdef int err
        if c.state == FB_CONNECTING:
            if not mask & (FL_WRITABLE | FL_HUP):
                return
            err = -fl_socket_error(c.fd)
            if err == 0 and not (mask & FL_WRITABLE and fl_is_connected(c.fd)):
                # Spurious (poller.h allows it): the connect is still under way. getpeername
                # also guards libkqueue, which reads SO_ERROR itself and leaves it cleared.
                return
            if err:
                self.fail(c, self.st.err_connect, err)
            else:
                self.on_connected(c)
            return
        if mask & FL_WRITABLE and c.state == FB_SENDING:
            self.send_more(c)
            if c.gen != gen:
                return
        if mask & FL_READABLE and c.fd >= 0:
            self.read_all(c)

    cdef void send_more(self, fb_conn *c) noexcept nogil:
        cdef size_t total = <size_t>c.batch * self.req_len
        cdef ssize_t n
        cdef int err
        while c.wsent < total:
            n = send(c.fd, self.reqbuf + c.wsent, total - c.wsent, MSG_NOSIGNAL)
            if n >= 0:
                c.wsent += <size_t>n
                self.st.bytes_out += <uint64_t>n
                continue
            err = errno
            if err == EINTR:
                continue
            if err == EAGAIN or err == EWOULDBLOCK:
                return  # the next writable edge resumes
            if err == ECONNRESET or err == EPIPE:
                self.st.peer_reset += 1
            self.fail(c, self.st.err_write, err)
            return
        self.st.sent += <uint64_t>c.batch
        c.state = FB_RECEIVING

    cdef void read_all(self, fb_conn *c) noexcept nogil:
        cdef uint32_t gen = c.gen
        cdef ssize_t n
        cdef int err
        cdef uint32_t cap
        cdef char *grown
        while True:
            if c.rpos == c.rlen:
                c.rpos = c.rlen = c.scanned = 0
            elif c.rlen == c.rcap:
                if c.rpos > 0:
                    # SAFETY: both ranges lie inside c.rbuf; only parsed bytes are dropped.
                    memmove(c.rbuf, c.rbuf + c.rpos, c.rlen - c.rpos)
                    c.rlen -= c.rpos
                    c.scanned = c.scanned - c.rpos if c.scanned > c.rpos else 0
                    c.rpos = 0
                elif c.rcap >= FB_MAX_HEAD:
                    self.fail(c, self.st.err_read, EPROTO)  # a head that never ends
                    return
                else:
                    cap = c.rcap * 2
                    grown = <char *>realloc(c.rbuf, cap)
                    if grown == NULL:
                        self.fail(c, self.st.err_read, ENOMEM)
                        return
                    c.rbuf = grown
                    c.rcap = cap
            n = recv(c.fd, c.rbuf + c.rlen, c.rcap - c.rlen, 0)
            if n > 0:
                self.st.bytes_in += <uint64_t>n
                c.rlen += <uint32_t>n
                # A fresh clock per read, not per loop turn: with pipelining a response can
                # arrive in the same turn its request was sent, and would measure 0.
                self.now = fl_now_ns()
                if self.parse(c) < 0 or c.gen != gen:
                    return
                continue
            if n == 0:
                self.peer_closed(c, False)
                return
            err = errno
            if err == EINTR:
                continue
            if err == EAGAIN or err == EWOULDBLOCK:
                return
            if err == ECONNRESET:
                self.peer_closed(c, True)
            else:
                self.fail(c, self.st.err_read, err)
            return

    cdef int parse(self, fb_conn *c) noexcept nogil:
        """Consumes c.rbuf[rpos..rlen): completes responses, skips bodies. Returns 0 to read
        on, -1 when the connection was closed or replaced (the caller must not touch it)."""
        cdef int64_t end
        cdef uint64_t size
        cdef uint32_t i
        cdef int rc, d
        cdef char ch
        while True:
            if c.rstate == FB_R_HEAD:
                if c.inflight == 0:
                    c.rpos = c.scanned = c.rlen  # nothing was asked: discard
                    return 0
                end = fb_find_head_end(c.rbuf, c.rpos, c.scanned if c.scanned > c.rpos else c.rpos,
                                       c.rlen)
                if end < 0:
                    c.scanned = c.rlen
                    return 0
                rc = self.parse_head(c, <uint32_t>end)
                if rc < 0:
                    self.fail(c, self.st.err_read, EPROTO)
                    return -1
                c.rpos = <uint32_t>end + 4
                c.scanned = c.rpos
            elif c.rstate == FB_R_BODY:
                if fb_skip_body(c):
                    return 0
                if self.complete(c) < 0:
                    return -1
            elif c.rstate == FB_R_CHUNK_SIZE:
                end = fb_find_crlf(c.rbuf, c.rpos, c.rlen)
                if end == -1:
                    if c.rlen - c.rpos > FB_MAX_LINE:
                        self.fail(c, self.st.err_read, EPROTO)
                        return -1
                    return 0
                if end == -2:
                    self.fail(c, self.st.err_read, EPROTO)
                    return -1
                size = 0
                d = 0
                i = c.rpos
                while i < <uint32_t>end:
                    ch = c.rbuf[i]
                    if 48 <= ch <= 57:
                        size = size * 16 + <uint64_t>(ch - 48)
                    elif 97 <= ch <= 102:
                        size = size * 16 + <uint64_t>(ch - 87)
                    elif 65 <= ch <= 70:
                        size = size * 16 + <uint64_t>(ch - 55)
                    else:
                        break  # ';' starts chunk extensions, ignored
                    d += 1
                    i += 1
                if d == 0 or d > 15:
                    self.fail(c, self.st.err_read, EPROTO)
                    return -1
                c.rpos = <uint32_t>end + 2
                if size == 0:
                    c.rstate = FB_R_TRAILER
                else:
                    c.body_left = <int64_t>size
                    c.rstate = FB_R_CHUNK_DATA
            elif c.rstate == FB_R_CHUNK_DATA:
                if fb_skip_body(c):
                    return 0
                c.rstate = FB_R_CHUNK_END
            elif c.rstate == FB_R_CHUNK_END:
                if c.rlen - c.rpos < 2:
                    return 0
                if c.rbuf[c.rpos] != 13 or c.rbuf[c.rpos + 1] != 10:
                    self.fail(c, self.st.err_read, EPROTO)
                    return -1
                c.rpos += 2
                c.rstate = FB_R_CHUNK_SIZE
            elif c.rstate == FB_R_TRAILER:
                if c.rlen - c.rpos < 2:
                    return 0
                if c.rbuf[c.rpos] == 13 and c.rbuf[c.rpos + 1] == 10:
                    c.rpos += 2
                    if self.complete(c) < 0:
                        return -1
                    continue
                end = fb_find_crlf(c.rbuf, c.rpos, c.rlen)
                if end == -1:
                    return 0
                if end == -2:
                    self.fail(c, self.st.err_read, EPROTO)
                    return -1
                c.rpos = <uint32_t>end + 2
            else:  # FB_R_UNTIL_EOF: the body is everything up to the server's close
                c.rpos = c.rlen
                return 0

    cdef int parse_head(self, fb_conn *c, uint32_t end) noexcept nogil:
        """Reads the status line and the headers that frame the body, from c.rbuf[rpos..end).
        Sets rstate (FB_R_HEAD again after an interim 1xx). Returns 0, or -1 if malformed."""
        cdef const char *p = c.rbuf + c.rpos
        cdef const char *stop = c.rbuf + end + 2  # includes the last header line's CRLF
        cdef const char *line
        cdef const char *nl
        cdef const char *colon
        cdef const char *v
        cdef const char *vend
        cdef size_t nlen
        cdef int status, i
        cdef int64_t length = -1
        cdef bint chunked = False, close_after
        if end - c.rpos < 12 or memcmp(p, b"HTTP/1.", 7) != 0 or p[8] != 32:
            return -1
        status = 0
        for i in range(9, 12):
            if not 48 <= p[i] <= 57:
                return -1
            status = status * 10 + (p[i] - 48)
        close_after = p[7] == 48  # HTTP/1.0 closes unless it says keep-alive
        line = <const char *>memchr(p, 10, stop - p) + 1
        while line < stop:
            nl = <const char *>memchr(line, 10, stop - line)
            if nl == NULL:
                break
            colon = <const char *>memchr(line, 58, nl - line)
            if colon != NULL:
                nlen = colon - line
                v = colon + 1
                vend = nl - 1 if (nl - 1)[0] == 13 else nl
                while v < vend and (v[0] == 32 or v[0] == 9):
                    v += 1
                if nlen == 14 and fb_ieq(line, b"content-length", 14):
                    if v == vend:
                        return -1
                    length = 0
                    while v < vend and 48 <= v[0] <= 57:
                        length = length * 10 + (v[0] - 48)
                        if length > (<int64_t>1 << 50):
                            return -1
                        v += 1
                    while v < vend and (v[0] == 32 or v[0] == 9):
                        v += 1
                    if v != vend:
                        return -1
                elif nlen == 17 and fb_ieq(line, b"transfer-encoding", 17):
                    chunked = fb_icontains(v, vend - v, b"chunked", 7)
                elif nlen == 10 and fb_ieq(line, b"connection", 10):
                    if fb_icontains(v, vend - v, b"close", 5):
                        close_after = True
                    elif fb_icontains(v, vend - v, b"keep-alive", 10):
                        close_after = False
            line = nl + 1
        c.status = status
        if 100 <= status < 200 and status != 101:
            c.rstate = FB_R_HEAD  # interim (100 Continue, 103 Early Hints): the real one follows
            return 0
        if close_after:
            c.flags |= FB_F_CLOSE
        if self.cfg.flags & FB_CFG_HEAD or status == 204 or status == 304 or status == 101:
            c.body_left = 0
            c.rstate = FB_R_BODY
        elif chunked:
            c.rstate = FB_R_CHUNK_SIZE
        elif length >= 0:
            c.body_left = length
            c.rstate = FB_R_BODY
        else:
            c.rstate = FB_R_UNTIL_EOF
            c.flags |= FB_F_CLOSE
        return 0

    cdef int complete(self, fb_conn *c) noexcept nogil:
        """One response is complete. Returns -1 if the connection was closed or replaced."""
        cdef uint32_t gen = c.gen
        fb_hist_record(self.lat, self.now - c.intended_ns)
        fb_hist_record(self.lat_raw, self.now - c.started_ns)
        self.st.status[c.status if 100 <= c.status < FB_NSTATUS else 0] += 1
        self.st.requests += 1
        c.nreq += 1
        c.inflight -= 1
        c.rstate = FB_R_HEAD
        if c.inflight > 0:
            return 0
        self.batch_done(c)
        return -1 if c.gen != gen or c.fd < 0 else 0

    cdef void batch_done(self, fb_conn *c) noexcept nogil:
        if c.flags & FB_F_CLOSE or not self.cfg.flags & FB_CFG_KEEPALIVE:
            # Let the server close first, so TIME_WAIT lands on its side; its FIN usually
            # arrives with the response, and read_all() reads it in the same drain.
            c.state = FB_AWAIT_EOF
            self.set_deadline(c, self.now + self.cfg.timeout_ns)
            return
        c.state = FB_IDLE
        self.begin(c)

    cdef void fail(self, fb_conn *c, uint64_t *table, int err) noexcept nogil:
        """The batch under way on c is lost to err: counts it, closes the connection, and
        starts the next batch (after a short pause if the connect itself failed)."""
        cdef bint connecting = c.state == FB_CONNECTING
        table[fb_errno_slot(err)] += 1
        self.st.failed += <uint64_t>c.inflight
        c.inflight = 0
        if connecting:
            self.st.connect_failed += 1
        self.close_conn(c)
        if connecting:
            self.wait_until(c, self.now + self.cfg.retry_ns)
        else:
            c.state = FB_IDLE
            self.begin(c)

    cdef void peer_closed(self, fb_conn *c, bint reset) noexcept nogil:
        """The server closed (EOF) or reset the connection."""
        cdef int state = c.state
        if reset:
            self.st.peer_reset += 1
        else:
            self.st.peer_eof += 1
        if (state == FB_RECEIVING or state == FB_SENDING) and not reset \
                and c.rstate == FB_R_UNTIL_EOF and c.inflight == 1:
            # A body without a length ends here. complete() only moves the slot to
            # FB_AWAIT_EOF (FB_F_CLOSE is set), so c stays this connection.
            self.complete(c)
            state = c.state
        if c.inflight > 0:
            if reset:
                self.st.err_read[ECONNRESET] += 1
            else:
                self.st.premature_eof += 1
            self.st.failed += <uint64_t>c.inflight
            c.inflight = 0
        self.close_conn(c)
        if state == FB_IDLE:
            return  # an idle keep-alive connection: the next batch reconnects when due
        c.state = FB_IDLE
        self.begin(c)

    cdef void close_conn(self, fb_conn *c) noexcept nogil:
        """Closes c's connection, if any (closing also removes it from the poller), and counts
        its requests. The caller accounts for requests still in flight."""
        if c.fd >= 0:
            close(c.fd)
            c.fd = -1
            if c.flags & FB_F_CONNECTED:
                self.st.closed += 1
                if c.nreq > self.st.conn_requests_max:
                    self.st.conn_requests_max = c.nreq
                if c.nreq < self.st.conn_requests_min:
                    self.st.conn_requests_min = c.nreq
        c.gen += 1
        c.flags = 0
        c.nreq = 0
        c.rstate = FB_R_HEAD
        c.rpos = c.rlen = c.scanned = 0

    cdef void wait_until(self, fb_conn *c, int64_t when) noexcept nogil:
        c.state = FB_IDLE
        c.wake_ns = when
        if when < self.next_due:
            self.next_due = when

    cdef void set_deadline(self, fb_conn *c, int64_t when) noexcept nogil:
        c.deadline_ns = when
        if when < self.next_due:
            self.next_due = when

    cdef void check_timers(self) noexcept nogil:
        """Starts the batches that are due and expires deadlines; then recomputes next_due.
        O(slots), but only run when something is due."""
        cdef int64_t due = INT64_MAX
        cdef uint32_t k
        cdef fb_conn *c
        self.next_due = INT64_MAX  # begin() and fail() below may lower it again
        for k in range(self.nconns):
            c = &self.conns[k]
            if c.state == FB_IDLE:
                if c.wake_ns <= self.now:
                    self.begin(c)
            elif c.state != FB_DONE and c.deadline_ns <= self.now:
                if c.state == FB_AWAIT_EOF:
                    self.close_conn(c)  # the response is in; the server just never closed
                    c.state = FB_IDLE
                    self.begin(c)
                elif c.state == FB_CONNECTING:
                    self.fail(c, self.st.err_connect, ETIMEDOUT)
                else:
                    self.fail(c, self.st.err_read, ETIMEDOUT)
            if c.state == FB_IDLE:
                if c.wake_ns < due:
                    due = c.wake_ns
            elif c.state != FB_DONE and c.deadline_ns < due:
                due = c.deadline_ns
        if due < self.next_due:
            self.next_due = due

    cdef void finish(self) noexcept nogil:
        """Ends the run: counts what was under way, closes every connection."""
        cdef uint32_t k
        cdef fb_conn *c
        for k in range(self.nconns):
            c = &self.conns[k]
            if c.state == FB_CONNECTING and c.fd >= 0 and fl_socket_error(c.fd) == 0 \
                    and fl_is_connected(c.fd):
                # The handshake completed but its writable edge was not read yet: the server
                # will accept this connection, so it counts as established.
                self.st.established += 1
                c.flags |= FB_F_CONNECTED
            self.unfinished += <uint64_t>c.inflight
            c.inflight = 0
            self.close_conn(c)
            if c.state != FB_DONE:
                c.state = FB_DONE
                self.active -= 1
        self.finished_ns = fl_now_ns()
