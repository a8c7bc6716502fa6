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
#   * each request reserved for a batch ends in exactly one of requests (complete response),
#     sent_unanswered (written whole, then lost or cut off by the end of the run) or not_sent
#     (never written whole): sent == requests + sent_unanswered, in every mode. settle() is
#     the one place that books what a batch leaves unanswered. A response that arrives before
#     its request was written whole (a server answering early) counts that request as sent.
#   * an established connection closed before any request went out whole counts in
#     never_sent, apart from the connections that carried requests.
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
# WebSocket mode (FB_CFG_WS, ws_io.pyx) keeps the same slots, batches (of one message) and books. A new
# connection first sends the upgrade request from reqbuf with a fresh key (ws.pyx); once the
# 101 and its Sec-WebSocket-Accept check out, each batch is one masked message whose echo
# completes it. Bytes to send are queued in the slot's wbuf (messages, pongs, close frames);
# wmark says when the message under way has gone out whole. A close frame from the server is
# answered and its TCP close awaited; a message it cut off is booked like any other.
#
# Slots are named by tokens (slot index | generation << 32): closing bumps the generation, so
# an event for the old connection is recognised as stale and dropped.

from libc.errno cimport EAGAIN, ECONNRESET, EINPROGRESS, ENOMEM, EPIPE, EPROTO, ETIMEDOUT
from libc.stdint cimport INT64_MAX, UINT64_MAX, int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from posix.unistd cimport close

from fastloop.core cimport buf, poller
from fastloop.loadgen cimport client


cdef enum:
    FB_WAIT_EVENTS = 512
    FB_READ_ROOM = 16384          # free bytes asked of the read buffer before each recv()
    FB_MAX_WAIT_MS = 100          # an idle wait re-checks the clock at least this often


def bench_now_ns():
    """The clock the client loops use (monotonic, ns): schedules and deadlines are on it."""
    return client.fl_now_ns()


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
        cdef int rc = poller.fl_poller_open(&self.poll)
        if rc < 0:
            raise_errno(-rc, "poller open")
        self.poll_open = True

    def __init__(self, *, int first_conn, int connections, int total_connections, int family,
                 bytes address, int port, list sources, bytes request, int pipeline=1,
                 bint keepalive=True, double rate=0.0, long long budget=-1,
                 double timeout=10.0, double connect_timeout=3.0, bint head=False,
                 tuple local_ports=None, bytes ws_message=None, bint ws_binary=False,
                 int ws_key_offset=-1, bytes seed=None):
        """A loop for `connections` slots numbered from first_conn among total_connections.
        address is the packed target address (4 or 16 bytes), sources a list of packed source
        addresses of the same family, request one complete request. rate is in requests per
        second across all loops (0: closed loop), budget the requests this loop may start
        (-1: unlimited, the run ends by duration or stop()).

        WebSocket mode: ws_message is the payload of every message, request the upgrade
        request whose Sec-WebSocket-Key value (FB_WS_KEY_LEN bytes) starts at ws_key_offset,
        seed 8 random bytes for the masks and keys."""
        setup_loop(self, first_conn, connections, total_connections, family, address, port, sources,
                   request, pipeline, keepalive, rate, budget, timeout, connect_timeout, head,
                   local_ports, ws_message, ws_binary, ws_key_offset, seed)

    def __dealloc__(self):
        cdef uint32_t i
        if self.conns != NULL:
            for i in range(self.nconns):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                buf.fl_buf_free(&self.conns[i].rbuf)
                buf.fl_buf_free(&self.conns[i].wbuf)
            free(self.conns)
        free(self.wsmsg)
        free(self.reqbuf)
        free(self.sources)
        free(self.source_lens)
        free(self.lat)
        free(self.lat_raw)
        if self.poll_open:
            poller.fl_poller_close(&self.poll)

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

    def stop(self, bint drain=False):
        """Thread-safe: ends run() at its next turn; requests under way count as unfinished.
        With drain, no new batch starts and run() ends once every batch under way is answered
        or has failed (its timeout still applies): so a client stopped after its server went
        away has read every answer the server wrote."""
        if drain:
            self.draining = 1
        else:
            self.stopping = 1
        if self.poll_open:
            poller.fl_poller_wake(&self.poll)

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
        """The counters once run() has returned, as a dict (errno tables: {errno: count})."""
        cdef fb_stats s = self.st
        cdef int i
        return {
            "requests": s.requests, "sent": s.sent, "sent_unanswered": s.sent_unanswered,
            "not_sent": s.not_sent, "failed": s.failed, "unfinished": s.unfinished,
            "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            "attempted": s.attempted, "established": s.established,
            "connect_failed": s.connect_failed, "never_sent": s.never_sent,
            "peer_eof": s.peer_eof, "peer_reset": s.peer_reset, "closed": s.closed,
            "conn_requests_min": s.conn_requests_min if s.closed else 0,
            "conn_requests_max": s.conn_requests_max,
            "premature_eof": s.premature_eof,
            "ws_upgraded": s.ws_upgraded, "ws_refused": s.ws_refused, "ws_closed": s.ws_closed,
            "ws_close_lost": s.ws_close_lost,
            "ws_close_codes": {(1000 + i if i < FB_NCLOSE - 1 else 0): s.ws_close_codes[i]
                               for i in range(FB_NCLOSE) if s.ws_close_codes[i]},
            "status": {i: s.status[i] for i in range(FB_NSTATUS) if s.status[i]},
            "errors_connect": errno_counts(s.err_connect),
            "errors_read": errno_counts(s.err_read),
            "errors_write": errno_counts(s.err_write),
            "finished_ns": self.finished_ns,
        }

    # ---- the loop (nogil) -----------------------------------------------------------------

    cdef int loop(self) noexcept nogil:
        cdef poller.fl_event events[FB_WAIT_EVENTS]
        cdef int n, i, timeout_ms
        cdef int64_t wait_ns
        cdef fb_conn *c
        cdef uint32_t k
        self.now = client.fl_now_ns()
        for k in range(self.nconns):
            self.begin(&self.conns[k])
        while not self.stopping and self.active > 0:
            if self.end_ns and self.now >= self.end_ns:
                break
            if self.draining and self.drained():
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
            n = poller.fl_poller_wait(&self.poll, events, FB_WAIT_EVENTS, timeout_ms)
            if n < 0:
                self.finish()
                return n
            self.now = client.fl_now_ns()
            for i in range(n):
                if events[i].token == poller.FL_WAKER_TOKEN:
                    poller.fl_poller_wake_drain(&self.poll)
                    continue
                c = self.conn_for(events[i].token)
                if c != NULL:
                    self.on_event(c, events[i].mask)
            if self.now >= self.next_due:
                self.check_timers()
        self.finish()
        return 0

    cdef bint drained(self) noexcept nogil:
        """stop(drain=True): True once no slot has requests written and unanswered. O(slots),
        only while draining."""
        cdef uint32_t k
        for k in range(self.nconns):
            if self.conns[k].state == FB_SENDING or self.conns[k].state == FB_RECEIVING:
                return False
        return True

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
        if self.draining:
            c.state = FB_IDLE
            c.wake_ns = INT64_MAX  # never due: the loop ends once the others are answered
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
        c.nsent = c.nanswered = 0
        c.wsent = 0
        c.intended_ns = intended
        c.started_ns = self.now
        if c.fd < 0:
            self.open_conn(c)
        elif self.cfg.flags & FB_CFG_WS:
            ws_start(self, c)  # frames may stand in rbuf: the stream must stay whole
        else:
            # Nothing can be owed to a batch not yet written: drop whatever the server sent
            # unasked.
            buf.fl_buf_consume(&c.rbuf, buf.fl_buf_len(&c.rbuf))
            c.resp.scanned = 0
            c.resp.state = FB_R_HEAD
            c.state = FB_SENDING
            self.set_deadline(c, self.now + self.cfg.timeout_ns)
            self.send_more(c)

    cdef void open_conn(self, fb_conn *c) noexcept nogil:
        cdef int fd, rc, i
        self.st.attempted += 1
        c.state = FB_CONNECTING
        fd = client.fl_client_socket(self.family)
        if fd < 0:
            self.fail(c, self.st.err_connect, -fd)
            return
        c.fd = fd
        fb_resp_reset(&c.resp)
        fb_ws_reset(&c.ws)
        if self.nsources:
            i = self.next_source % self.nsources
            self.next_source += 1
            rc = client.fl_bind_source(fd, &self.sources[i], self.source_lens[i])
            if rc < 0:
                self.fail(c, self.st.err_connect, -rc)
                return
        if self.cfg.port_lo:
            rc = client.fl_set_local_port_range(fd, self.cfg.port_lo, self.cfg.port_hi)
            if rc < 0:
                self.fail(c, self.st.err_connect, -rc)
                return
        rc = client.fl_connect(fd, &self.target, self.target_len)
        if rc < 0 and rc != -EINPROGRESS:
            self.fail(c, self.st.err_connect, -rc)
            return
        cdef int prc = poller.fl_poller_add(&self.poll, fd, (<uint64_t>c.gen << 32) | c.index)
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
        if self.cfg.flags & FB_CFG_WS and fb_ws_queue_handshake(
                &c.ws, &c.wbuf, self.reqbuf, self.req_len, self.key_offset, &self.rng) < 0:
            self.fail(c, self.st.err_write, ENOMEM)
            return
        self.send_more(c)

    cdef void on_event(self, fb_conn *c, int mask) noexcept nogil:
        cdef uint32_t gen = c.gen
        cdef int err
        if c.state == FB_CONNECTING:
            if not mask & (poller.FL_WRITABLE | poller.FL_HUP):
                return
            err = -client.fl_socket_error(c.fd)
            if err == 0 and not (mask & poller.FL_WRITABLE and client.fl_is_connected(c.fd)):
                # Spurious (poller.h allows it): the connect is still under way. getpeername
                # also guards libkqueue, which reads SO_ERROR itself and leaves it cleared.
                return
            if err:
                self.fail(c, self.st.err_connect, err)
            else:
                self.on_connected(c)
            return
        if mask & poller.FL_WRITABLE and (c.state == FB_SENDING or buf.fl_buf_len(&c.wbuf)):
            self.send_more(c)
            if c.gen != gen:
                return
        if mask & poller.FL_READABLE and c.fd >= 0:
            self.read_all(c)

    cdef void send_more(self, fb_conn *c) noexcept nogil:
        cdef size_t total = <size_t>c.batch * self.req_len
        cdef ssize_t n
        if self.cfg.flags & FB_CFG_WS:
            ws_send(self, c)
            return
        while c.wsent < total:
            n = client.fl_send(c.fd, self.reqbuf + c.wsent, total - c.wsent)
            if n == -EAGAIN:
                break  # the next writable edge resumes
            if n < 0:
                self.send_failed(c, <int>-n)
                return
            c.wsent += <size_t>n
            self.st.bytes_out += <uint64_t>n
        self.count_sent(c, <int>(c.wsent // self.req_len))
        if c.wsent == total:
            c.state = FB_RECEIVING

    cdef void send_failed(self, fb_conn *c, int err) noexcept nogil:
        """A write failed with err: a reset or EPIPE means the server is gone."""
        if err == ECONNRESET or err == EPIPE:
            self.st.peer_reset += 1
        self.fail(c, self.st.err_write, err)

    cdef void count_sent(self, fb_conn *c, int whole) noexcept nogil:
        """`whole` requests of the batch have been written whole (or answered)."""
        if whole > c.nsent:
            self.st.sent += <uint64_t>(whole - c.nsent)
            c.nsent = whole
            c.flags |= FB_F_SENT

    cdef void read_all(self, fb_conn *c) noexcept nogil:
        cdef uint32_t gen = c.gen
        cdef ssize_t n
        while True:
            if buf.fl_buf_reserve(&c.rbuf, FB_READ_ROOM) < 0:
                self.fail(c, self.st.err_read, ENOMEM)
                return
            # SAFETY: reserve left room() >= FB_READ_ROOM free bytes at the tail of c.rbuf,
            # which this slot alone owns until close_conn() or __dealloc__.
            n = client.fl_recv(c.fd, buf.fl_buf_tail(&c.rbuf), buf.fl_buf_room(&c.rbuf))
            if n > 0:
                self.st.bytes_in += <uint64_t>n
                c.rbuf.end += <size_t>n
                # A fresh clock per read, not per loop turn: with pipelining a response can
                # arrive in the same turn its request was sent, and would measure 0.
                self.now = client.fl_now_ns()
                if self.parse(c) < 0 or c.gen != gen:
                    return
                continue
            if n == 0:
                self.peer_closed(c, False)
            elif n == -ECONNRESET:
                self.peer_closed(c, True)
            elif n != -EAGAIN:
                self.fail(c, self.st.err_read, <int>-n)
            return

    cdef int parse(self, fb_conn *c) noexcept nogil:
        """Completes the responses in c.rbuf. Returns 0 to read on, -1 when the connection
        was closed or replaced (the caller must not touch it)."""
        cdef int rc
        if self.cfg.flags & FB_CFG_WS:
            return ws_parse(self, c)
        while True:
            if c.nanswered == c.batch or c.state == FB_AWAIT_EOF:
                # Nothing was asked: discard (a server may send after the last response).
                buf.fl_buf_consume(&c.rbuf, buf.fl_buf_len(&c.rbuf))
                return 0
            rc = fb_resp_step(&c.resp, &c.rbuf, self.cfg.flags & FB_CFG_HEAD)
            if rc == FB_P_MORE:
                return 0
            if rc == FB_P_BAD:
                self.fail(c, self.st.err_read, EPROTO)
                return -1
            if self.complete(c) < 0:
                return -1

    cdef int complete(self, fb_conn *c) noexcept nogil:
        """One response is complete. Returns -1 if the connection was closed or replaced."""
        cdef uint32_t gen = c.gen
        cdef int status = c.resp.status
        fb_hist_record(self.lat, self.now - c.intended_ns)
        fb_hist_record(self.lat_raw, self.now - c.started_ns)
        if not self.cfg.flags & FB_CFG_WS:  # there, the status table holds the handshakes'
            self.st.status[status if 100 <= status < FB_NSTATUS else 0] += 1
        self.st.requests += 1
        c.nreq += 1
        c.nanswered += 1
        self.count_sent(c, c.nanswered)  # answered, so it was sent, even if not yet whole
        if c.nanswered < c.batch:
            return 0
        self.batch_done(c)
        return -1 if c.gen != gen or c.fd < 0 else 0

    cdef void batch_done(self, fb_conn *c) noexcept nogil:
        if c.resp.close or not self.cfg.flags & FB_CFG_KEEPALIVE:
            # Let the server close first, so TIME_WAIT lands on its side; its FIN usually
            # arrives with the response, and read_all() reads it in the same drain.
            c.state = FB_AWAIT_EOF
            self.set_deadline(c, self.now + self.cfg.timeout_ns)
            return
        c.state = FB_IDLE
        self.begin(c)

    cdef void settle(self, fb_conn *c, uint64_t *outcome) noexcept nogil:
        """Books the requests of c's batch that got no response, in sent_unanswered or
        not_sent and in *outcome (failed or unfinished); the batch is then over."""
        cdef int left = c.batch - c.nanswered
        if left > 0:
            self.st.sent_unanswered += <uint64_t>(c.nsent - c.nanswered)
            self.st.not_sent += <uint64_t>(c.batch - c.nsent)
            outcome[0] += <uint64_t>left
        c.batch = c.nsent = c.nanswered = 0
        c.wmark = 0  # whatever of it is still queued can no longer count as sent

    cdef void fail(self, fb_conn *c, uint64_t *table, int err) noexcept nogil:
        """The batch under way on c is lost to err: counts it, closes the connection, and
        starts the next batch (after a short pause if the connect itself failed)."""
        cdef bint connecting = c.state == FB_CONNECTING
        table[fb_errno_slot(err)] += 1
        self.settle(c, &self.st.failed)
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
                and fb_resp_ends_at_eof(&c.resp) and c.batch - c.nanswered == 1:
            # A body without a length ends here. complete() only moves the slot to
            # FB_AWAIT_EOF (resp.close is set), so c stays this connection.
            self.complete(c)
            state = c.state
        if c.batch > c.nanswered:
            if reset:
                self.st.err_read[ECONNRESET] += 1
            else:
                self.st.premature_eof += 1
        self.settle(c, &self.st.failed)
        self.close_conn(c)
        if state == FB_IDLE:
            return  # an idle keep-alive connection: the next batch reconnects when due
        c.state = FB_IDLE
        self.begin(c)

    cdef void close_conn(self, fb_conn *c) noexcept nogil:
        """Closes c's connection, if any (closing also removes it from the poller), and counts
        it. The caller has settled the batch."""
        cdef unsigned char goodbye[2]
        if c.fd >= 0:
            if c.ws.phase == FB_WS_OPEN and self.cfg.flags & FB_CFG_WS \
                    and buf.fl_buf_len(&c.wbuf) == 0:
                # A close frame (1000) first, so the server books a clean close; best effort,
                # never waited for. Not after half a frame: it would read as garbage.
                goodbye[0], goodbye[1] = 0x03, 0xE8
                if fb_ws_queue_frame(&c.wbuf, FB_WS_OP_CLOSE, goodbye, 2, &self.rng) == 0:
                    client.fl_send(c.fd, buf.fl_buf_head(&c.wbuf), buf.fl_buf_len(&c.wbuf))
            close(c.fd)
            c.fd = -1
            if c.flags & FB_F_CONNECTED:
                self.st.closed += 1
                if not c.flags & FB_F_SENT:
                    self.st.never_sent += 1
                if c.nreq > self.st.conn_requests_max:
                    self.st.conn_requests_max = c.nreq
                if c.nreq < self.st.conn_requests_min:
                    self.st.conn_requests_min = c.nreq
        c.gen += 1
        c.flags = 0
        c.nreq = 0
        buf.fl_buf_consume(&c.rbuf, buf.fl_buf_len(&c.rbuf))
        buf.fl_buf_consume(&c.wbuf, buf.fl_buf_len(&c.wbuf))
        c.wmark = 0
        fb_resp_reset(&c.resp)
        fb_ws_reset(&c.ws)

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
            if c.state == FB_CONNECTING and c.fd >= 0 and client.fl_socket_error(c.fd) == 0 \
                    and client.fl_is_connected(c.fd):
                # The handshake completed but its writable edge was not read yet: the server
                # will accept this connection, so it counts as established.
                self.st.established += 1
                c.flags |= FB_F_CONNECTED
            self.settle(c, &self.st.unfinished)
            self.close_conn(c)
            if c.state != FB_DONE:
                c.state = FB_DONE
                self.active -= 1
        self.finished_ns = client.fl_now_ns()
