# The Worker: one event loop per thread, owning its connections.
#
# Theory of operation. A Worker owns a poller, a table of connections and, in reuseport
# dispatch, its own listening socket (see loop.pyx); it runs on one thread with the GIL
# released, and no other thread touches its connections. In acceptor dispatch an Acceptor
# (acceptor.pyx) puts accepted descriptors in the worker's inbox and wakes its poller.
#
# Every registration is edge-triggered, so every edge is drained: the listener until accept()
# says EAGAIN (the failure fastloop exists to prevent was a listener that took one connection
# per edge, leaving the rest to rot in the backlog), a socket until it is drained or the read
# budget is spent (then it is re-queued for the next turn, so one client cannot starve the
# others), and writes until EAGAIN, after which the next writable edge resumes them.
#
# A loop turn: wait; read every ready connection and answer what C can answer (static routes,
# errors); then take the GIL once for every request of the turn that needs Python; flush;
# expire timers. Connections are named by tokens (slot index | generation << 32): closing a
# connection bumps its slot's generation, so a later event in the same batch for that slot,
# even one already reused by a new connection, is recognised as stale and dropped.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.errno cimport EAGAIN, EINTR, EIO, ENOMEM, EPIPE, ETIMEDOUT, errno
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset, strlen
from posix.unistd cimport close


cdef enum:
    FL_BUF_SIZE = 16384           # pooled buffer size; larger requests get a malloc'd one
    FL_POOL_MAX = 256             # spare buffers a worker keeps
    FL_READ_BUDGET = 262144       # bytes read from one connection per turn before yielding
    FL_HIGH_WATER = 1048576       # unsent bytes that pause reading a connection's requests
    FL_LOW_WATER = 262144         # ... and resume it
    FL_WAIT_EVENTS = 512
    FL_DATE_LINE_LEN = 37         # "Date: " + 29 + CRLF
    FL_ACCEPT_RETRY_MS = 100      # after accept() failed on EMFILE and the like (nginx: 500)
    FL_FRESH_GRACE_MS = 1000      # stopping: how long a new connection may take to send its request
    FL_CHUNK_SLACK = 65536        # room a chunked body leaves in its buffer for undecoded framing

cdef extern from *:
    """
    /* The largest read buffer (rbuf_ensure doubles from FL_BUF_SIZE up to it): every offset
     * into one fits 32 bits. A buffered request (head and body) must fit in it; larger bodies
     * need a streaming route and get 413 otherwise. A macro: too large for an enum. */
    #define FL_RBUF_MAX ((uint64_t)1 << 31)
    """
    const uint64_t FL_RBUF_MAX

# conn_process results
cdef enum:
    FL_PROC_MORE = 0              # every complete request was answered: read more
    FL_PROC_PY = 1                # a request waits for the Python phase
    FL_PROC_STOP = 2              # parse nothing more for now (closing, paused or closed)


cdef const char *CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef const char *CONN_CLOSE = b"Connection: close\r\n"
cdef const char *CONN_KEEP_ALIVE = b"Connection: keep-alive\r\n"


cdef int fl_match_path(const fl_static *routes, int n, const char *p, fl_span path) noexcept nogil:
    """Index of the route whose path is p's span, or -1."""
    cdef int i
    for i in range(n):
        if routes[i].path_len == path.len and memcmp(routes[i].path, p + path.off, path.len) == 0:
            return i
    return -1


cdef inline size_t fl_error_len(const fl_static *s) noexcept nogil:
    return s.head_len + FL_DATE_LINE_LEN + 2 + s.body_len


cdef size_t fl_put_error(char *out, const fl_static *s, const char *date_line) noexcept nogil:
    """Writes the prebuilt error answer s, with the Date line, at out (fl_error_len(s) bytes
    of room); returns its length."""
    memcpy(out, s.head, s.head_len)
    memcpy(out + s.head_len, date_line, FL_DATE_LINE_LEN)
    memcpy(out + s.head_len + FL_DATE_LINE_LEN, b"\r\n", 2)
    memcpy(out + s.head_len + FL_DATE_LINE_LEN + 2, s.body, s.body_len)
    return fl_error_len(s)


cdef inline uint64_t fl_token(fl_conn *c) noexcept nogil:
    return (<uint64_t>c.gen << 32) | c.slot


cdef class Worker(Loop):
    """An event loop that owns connections. Built by Server; run() blocks its thread."""

    def __cinit__(self, *args, **kwargs):
        self.inbox = <fl_inbox *>malloc(sizeof(fl_inbox))
        if self.inbox == NULL:
            raise MemoryError()
        memset(self.inbox, 0, sizeof(fl_inbox))
        pthread_mutex_init(&self.inbox.lock, NULL)
        self.inbox.poller = &self.poller
        self.now_ms = fl_now_ms()
        self.date_sec = -1
        self.refresh_date()

    def __init__(self, int index, app, *, bint is_tcp=True, dict limits=None, dict timeouts=None,
                 ConnLimit conn_limit=None):
        tmo = dict(DEFAULT_TIMEOUTS, **(timeouts or {}))
        self.index = index
        self.is_tcp = is_tcp
        self.limits = limits_from(limits)
        # A chunked body is decoded in its read buffer, after a head of at most header_bytes
        # (<= FL_MAX_HEAD_BYTES, so this stays positive) and before undecoded framing.
        self.buffered_chunked_max = min(self.limits.body_bytes,
                                        <int64_t>FL_RBUF_MAX - self.limits.header_bytes - FL_CHUNK_SLACK)
        self.log_events = log.isEnabledFor(logging.DEBUG)
        self.conn_limit = conn_limit
        if conn_limit is not None:
            # SAFETY: self.conn_limit keeps the shared counter alive as long as this worker.
            self.open_total = conn_limit.count
            self.max_open = conn_limit.limit
        for i, name in enumerate(TIMER_NAMES):
            if i:
                self.timers[i].duration_ms = <int64_t>(tmo[name] * 1000)
        self.app = app
        self.routes = app._routes
        statics = app._static_responses()
        self.static_keep = statics
        self.statics = <fl_static *>malloc(max(1, len(statics)) * sizeof(fl_static))
        if self.statics == NULL:
            raise MemoryError()
        for i, (path, head, body) in enumerate(statics):
            # SAFETY: the bytes live in self.static_keep for the worker's whole life.
            self.statics[i].path = PyBytes_AS_STRING(path)
            self.statics[i].path_len = PyBytes_GET_SIZE(path)
            self.statics[i].head = PyBytes_AS_STRING(head)
            self.statics[i].head_len = PyBytes_GET_SIZE(head)
            self.statics[i].body = PyBytes_AS_STRING(body)
            self.statics[i].body_len = PyBytes_GET_SIZE(body)
        self.nstatics = len(statics)
        streams = [p.encode("latin-1") for p in getattr(app, "_stream_paths", ())]
        self.static_keep = (statics, streams)
        self.streams = <fl_static *>malloc(max(1, len(streams)) * sizeof(fl_static))
        if self.streams == NULL:
            raise MemoryError()
        for i, path in enumerate(streams):
            # SAFETY: kept alive in self.static_keep, like the static routes.
            self.streams[i].path = PyBytes_AS_STRING(path)
            self.streams[i].path_len = PyBytes_GET_SIZE(path)
        self.nstreams = len(streams)

    def __dealloc__(self):
        cdef uint32_t i
        cdef fl_conn *c
        for i in range(self.nslots):
            c = self.slots[i]
            if c.fd >= 0:
                close(c.fd)
            if c.rbuf != NULL:
                free(c.rbuf)
            if c.wbuf != NULL:
                free(c.wbuf)
            free(c)
        free(self.slots)
        free(self.free_slots)
        for i in range(<uint32_t>self.npool):
            free(self.pool[i])
        free(self.pool)
        free(self.pyq)
        free(self.resume)
        free(self.statics)
        free(self.streams)
        if self.inbox != NULL:
            for i in range(<uint32_t>self.inbox.n):
                close(self.inbox.fds[i])
            free(self.inbox.fds)
            pthread_mutex_destroy(&self.inbox.lock)
            free(self.inbox)

    # ---- the loop -------------------------------------------------------------------------

    cdef int loop(self) noexcept nogil:
        cdef fl_event events[FL_WAIT_EVENTS]
        cdef int n, i, j, nres, timeout
        cdef bint stop_begun = False, fresh_closed = False
        cdef int64_t fresh_deadline = 0, next_deadline, wait_now
        cdef uint64_t tok
        cdef uint64_t *res
        cdef fl_conn *c
        while True:
            if self.stopping:
                if not stop_begun:
                    self.begin_stop()
                    stop_begun = True
                    fresh_deadline = self.now_ms + FL_FRESH_GRACE_MS
                elif not fresh_closed and self.now_ms >= fresh_deadline:
                    self.close_idle(True)
                    fresh_closed = True
                if self.counters.open == 0 or self.now_ms >= self.stop_deadline:
                    break
            next_deadline = self.next_deadline()
            timeout = -1 if next_deadline < 0 else <int>max(<int64_t>0, next_deadline - self.now_ms)
            if self.listener.retry:
                self.accept_all()
                if self.listener.retry and (timeout < 0 or timeout > FL_ACCEPT_RETRY_MS):
                    timeout = FL_ACCEPT_RETRY_MS
            if self.nresume:
                timeout = 0
            elif self.stopping and (timeout < 0 or timeout > 50):
                timeout = 50
            if self.nevents_to_log:
                with gil:
                    self.flush_notes()
            n = fl_poller_wait(&self.poller, events, FL_WAIT_EVENTS, timeout)
            if n < 0:
                return n
            self.now_ms = wait_now = fl_now_ms()
            self.refresh_date()
            if self.nresume:
                # Swap the list out first: reading may queue a connection for the next turn.
                res = self.resume
                nres = self.nresume
                self.resume = NULL
                self.nresume = self.cap_resume = 0
                for j in range(nres):
                    c = self.conn_for(res[j])
                    if c != NULL:
                        self.conn_read(c, 0)
                        if not (c.flags & CONN_F_QUEUED_PY):
                            self.conn_settle(c)
                free(res)
            for i in range(n):
                tok = events[i].token
                if tok == FL_LISTENER_TOKEN:
                    self.accept_all()
                elif tok == FL_WAKER_TOKEN:
                    fl_poller_wake_drain(&self.poller)
                    self.take_inbox()
                else:
                    c = self.conn_for(tok)
                    if c != NULL:  # NULL: closed earlier in this batch, maybe its slot reused
                        self.conn_event(c, events[i].mask)
            if self.npyq:
                # The one GIL acquisition of this turn, for every request that needs Python.
                with gil:
                    self.run_python()
                # Handlers take their time: timers set from here on start from now.
                self.now_ms = fl_now_ms()
                self.refresh_date()
                for j in range(self.npyq):
                    c = self.conn_for(self.pyq[j])
                    if c != NULL:
                        c.flags &= ~CONN_F_QUEUED_PY
                        self.conn_settle(c)
                        # Reading stopped for Python before the socket was known to be drained:
                        # no new edge may come for what it holds, so read it next turn.
                        if c.fd >= 0 and (c.flags & CONN_F_READ_MORE) and c.state != CONN_CLOSING \
                                and not (c.flags & CONN_F_CLOSE_AFTER):
                            self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
                self.npyq = 0
            # Expire as of the wait: a connection whose request arrived while a handler held
            # this thread has its event in the next wait, and is served, not timed out.
            self.timers_expire(wait_now)
        self.take_inbox()  # in transit from the acceptor: registered, then closed with the rest
        for i in range(<int>self.nslots):
            if self.slots[i].fd >= 0:
                self.conn_close(self.slots[i])
        self.close_listener()
        return 0

    cdef void accept_all(self) noexcept nogil:
        cdef int fd
        while True:
            fd = self.accept_one()
            if fd < 0:
                return
            self.counters.accepted += 1
            self.counters.open += 1
            self.adopt(fd)

    cdef void take_inbox(self) noexcept nogil:
        cdef int *fds
        cdef int n, i
        pthread_mutex_lock(&self.inbox.lock)
        fds = self.inbox.fds
        n = self.inbox.n
        self.inbox.fds = NULL
        self.inbox.n = self.inbox.cap = 0
        pthread_mutex_unlock(&self.inbox.lock)
        for i in range(n):
            self.counters.accepted += 1
            self.counters.open += 1
            self.adopt(fds[i])
        free(fds)

    cdef void adopt(self, int fd) noexcept nogil:
        """Registers an accepted descriptor, already counted as accepted and open."""
        cdef fl_conn *c
        cdef uint32_t slot, newcap
        cdef void *p
        if self.open_total != NULL and fl_atomic_add(self.open_total, 1) > self.max_open:
            fl_atomic_add(self.open_total, -1)
            self.refuse(fd)
            return
        if self.nfree:
            self.nfree -= 1
            slot = self.free_slots[self.nfree]
            c = self.slots[slot]
        else:
            if self.nslots == self.cap_slots:
                newcap = self.cap_slots * 2 if self.cap_slots else 64
                p = realloc(self.slots, newcap * sizeof(fl_conn *))
                if p == NULL:
                    self.drop_fd(fd)
                    return
                self.slots = <fl_conn **>p
                p = realloc(self.free_slots, newcap * sizeof(uint32_t))
                if p == NULL:
                    self.drop_fd(fd)
                    return
                self.free_slots = <uint32_t *>p
                self.cap_slots = newcap
            c = <fl_conn *>malloc(sizeof(fl_conn))
            if c == NULL:
                self.drop_fd(fd)
                return
            memset(c, 0, sizeof(fl_conn))
            c.slot = self.nslots
            c.gen = 1
            self.slots[self.nslots] = c
            self.nslots += 1
        c.fd = fd
        c.state = CONN_READ_HEAD
        c.flags = 0
        c.rpos = c.rlen = c.scanned = 0
        c.wsent = c.wlen = 0
        c.timer = FL_TIMER_NONE
        if self.is_tcp:
            fl_set_nodelay(fd)
        cdef int rc = fl_poller_add(&self.poller, fd, fl_token(c))
        if rc < 0:
            self.count_errno(self.counters.io_errors, -rc)
            self.conn_close(c)
            return
        self.timer_set(c, FL_TIMER_HEADER)  # the first request must arrive in time too

    cdef void refuse(self, int fd) noexcept nogil:
        """Over limit_concurrency: one best-effort 503, then close (counted as a rejection)."""
        cdef char buf[512]
        cdef fl_static *s = &fl_error_responses[fl_status_index(503)]
        if fl_error_len(s) <= sizeof(buf):
            send(fd, buf, fl_put_error(buf, s, self.date_line), MSG_NOSIGNAL)
            shutdown(fd, SHUT_WR)
            # Whatever the client already sent would turn the close into a reset that can
            # destroy the 503 in flight: swallow what is there (without waiting for more).
            while recv(fd, buf, sizeof(buf), 0) > 0:
                pass
        self.counters.rejected[fl_status_index(503)] += 1
        self.note(503)
        close(fd)
        self.counters.closed += 1
        self.counters.open -= 1

    cdef void drop_fd(self, int fd) noexcept nogil:
        """adopt() could not make room for fd: close it, counted as an ENOMEM I/O error."""
        close(fd)
        self.counters.closed += 1
        self.counters.open -= 1
        if self.open_total != NULL:
            fl_atomic_add(self.open_total, -1)
        self.count_errno(self.counters.io_errors, ENOMEM)

    cdef fl_conn *conn_for(self, uint64_t token) noexcept nogil:
        cdef uint32_t slot = <uint32_t>(token & 0xffffffffu)
        cdef fl_conn *c
        if slot >= self.nslots:
            return NULL
        c = self.slots[slot]
        if c.gen != <uint32_t>(token >> 32) or c.fd < 0:
            return NULL
        return c

    cdef void queue(self, uint64_t **arr, int *n, int *cap, fl_conn *c) noexcept nogil:
        cdef void *p
        if n[0] == cap[0]:
            p = realloc(arr[0], (cap[0] * 2 + 16) * sizeof(uint64_t))
            if p == NULL:
                self.count_errno(self.counters.io_errors, ENOMEM)
                self.conn_close(c)
                return
            arr[0] = <uint64_t *>p
            cap[0] = cap[0] * 2 + 16
        arr[0][n[0]] = fl_token(c)
        n[0] += 1

    # ---- one connection -------------------------------------------------------------------

    cdef void conn_event(self, fl_conn *c, int mask) noexcept nogil:
        if (mask & FL_WRITABLE) and c.wsent < c.wlen:
            if self.conn_flush(c) < 0:
                return
        if mask & FL_READABLE:
            self.conn_read(c, mask)
        if c.fd >= 0 and not (c.flags & CONN_F_QUEUED_PY):
            self.conn_settle(c)

    cdef void conn_read(self, fl_conn *c, int mask) noexcept nogil:
        cdef char discard[4096]
        cdef ssize_t n
        cdef size_t space
        cdef int rc, err
        cdef int64_t budget = FL_READ_BUDGET
        if c.state == CONN_CLOSING:
            # Lingering close: the answer is sent and the write side shut; swallow what the
            # client still sends so that closing does not reset the answer away (RFC 9112 9.6).
            while True:
                n = recv(c.fd, discard, sizeof(discard), 0)
                if n > 0:
                    self.counters.bytes_in += n
                    continue
                if n < 0 and errno == EINTR:
                    continue
                if n == 0 or errno != EAGAIN:
                    self.conn_close(c)
                return
        if c.state == CONN_IN_HANDLER or (c.flags & CONN_F_QUEUED_PY):
            c.flags |= CONN_F_READ_MORE  # an edge goes unread now: read once it is answered
            return
        if c.flags & (CONN_F_PAUSED | CONN_F_CLOSE_AFTER | CONN_F_PEER_EOF):
            return
        c.flags &= ~CONN_F_READ_MORE
        if c.rpos < c.rlen:
            # Requests may wait in the buffer (reading paused, or stopped for the Python
            # phase): answer them before reading more, as no new edge will announce them.
            rc = self.conn_process(c)
            if rc == FL_PROC_PY:
                c.flags |= CONN_F_QUEUED_PY | CONN_F_READ_MORE  # the socket was not read yet
                self.queue(&self.pyq, &self.npyq, &self.cap_pyq, c)
                return
            if rc == FL_PROC_STOP or c.fd < 0:
                return
        while True:
            if self.rbuf_ensure(c, 1) < 0:
                self.count_errno(self.counters.io_errors, ENOMEM)
                self.conn_close(c)
                return
            space = c.rcap - c.rlen
            n = recv(c.fd, c.rbuf + c.rlen, space, 0)
            if n > 0:
                c.rlen += <uint32_t>n
                self.counters.bytes_in += n
                rc = self.conn_process(c)
                if rc == FL_PROC_PY:
                    c.flags |= CONN_F_QUEUED_PY
                    if <size_t>n == space or (mask & FL_HUP):
                        c.flags |= CONN_F_READ_MORE  # not known to be drained (see below)
                    self.queue(&self.pyq, &self.npyq, &self.cap_pyq, c)
                    return
                if rc == FL_PROC_STOP or c.fd < 0:
                    return
                # A short read took everything the socket held: any byte arriving later makes
                # a new edge, so no read is needed to see EAGAIN. Unless the peer shut down: its
                # FIN may already be queued behind the data, and only reading finds it.
                if <size_t>n < space and not (mask & FL_HUP):
                    return
                budget -= n
                if budget <= 0:
                    self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
                    return
            elif n == 0:
                # The client sent all it will. Pending answers still go out (half-close), then
                # the connection closes; a partial request can never complete.
                c.flags |= CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER
                return
            else:
                err = errno
                if err == EAGAIN or err == EWOULDBLOCK:
                    return
                if err == EINTR:
                    continue
                self.count_errno(self.counters.io_errors, err)
                self.conn_close(c)
                return

    cdef int conn_process(self, fl_conn *c) noexcept nogil:
        """Answers every complete request in c's buffer that C can answer."""
        cdef char *p
        cdef uint32_t avail
        cdef Py_ssize_t end
        cdef int rc
        cdef int64_t cl
        cdef bint complete
        while True:
            if c.flags & CONN_F_CLOSE_AFTER:
                return FL_PROC_STOP
            if c.wlen - c.wsent > FL_HIGH_WATER:
                # Backpressure: the client is not reading its answers, so stop reading its
                # requests; TCP flow control then slows it down. Memory stays bounded.
                c.flags |= CONN_F_PAUSED
                return FL_PROC_STOP
            p = c.rbuf + c.rpos
            avail = c.rlen - c.rpos
            if c.state == CONN_READ_HEAD:
                # RFC 9112 2.2: ignore empty lines received before a request-line.
                while avail >= 2 and p[0] == c'\r' and p[1] == c'\n':
                    c.rpos += 2
                    p += 2
                    avail -= 2
                if avail == 0:
                    c.rpos = c.rlen = c.scanned = 0
                    return FL_PROC_MORE
                end = fl_frame_head(p, avail, &c.scanned, &self.req, &self.limits)
                if end == 0:
                    return FL_PROC_MORE
                if end < 0:
                    self.conn_reject(c, <int>-end)
                    return FL_PROC_STOP
                cl = self.req.content_length if self.req.content_length > 0 else 0
                c.head_len = <uint32_t>end
                c.req_flags = self.req.flags
                if self.req.flags & FL_REQ_CHUNKED:
                    fl_chunked_start(&c.chunked, c.head_len)
                else:
                    # 64 bits end to end: cl <= body_bytes <= MAX_BODY_BYTES (limits_from)
                    c.body_len = <uint64_t>cl
                    c.req_len = <uint64_t>end + <uint64_t>cl
                c.route = -1
                if self.req.flags & (FL_REQ_GET | FL_REQ_HEAD):
                    c.route = fl_match_path(self.statics, self.nstatics, p, self.req.path)
                if c.route < 0:
                    # What a handler's Request is built from (make_request); a static answer
                    # needs none of it.
                    c.line.method = self.req.method
                    c.line.path = self.req.path
                    c.line.query = self.req.query
                    c.line.authority = self.req.authority
                    c.line.minor = self.req.minor
                    if fl_match_path(self.streams, self.nstreams, p, self.req.path) >= 0:
                        # A streaming route: its handler runs now and reads the body as it
                        # arrives (Request.stream), instead of after all of it is buffered.
                        c.flags |= CONN_F_STREAM
                        c.state = CONN_IN_HANDLER
                        return FL_PROC_PY
                c.state = CONN_READ_BODY
            # CONN_READ_BODY: wait until the whole body is buffered (and decoded, if chunked)
            if c.req_flags & FL_REQ_CHUNKED:
                rc = fl_decode_chunked(p, avail, &c.chunked, self.buffered_chunked_max)
                if rc < 0:
                    self.conn_reject(c, -rc)
                    return FL_PROC_STOP
                complete = rc == 1
                if complete:
                    c.req_len = c.chunked.in_
                    c.body_len = c.chunked.out - c.head_len
                elif c.chunked.in_ > c.chunked.out:
                    # Drop the framing decoded so far, so the buffer holds the head, the body
                    # and an undecoded tail, never the raw message: chunk extensions or 1-byte
                    # chunks cannot make it grow past what body_bytes allows.
                    memmove(p + c.chunked.out, p + c.chunked.in_, avail - c.chunked.in_)
                    c.rlen -= c.chunked.in_ - c.chunked.out
                    c.chunked.in_ = c.chunked.out
            else:
                complete = avail >= c.req_len
                if not complete:
                    if c.req_len > FL_RBUF_MAX:
                        # Buffered, it would not fit one read buffer (so it never completes
                        # and always comes here): 413. This keeps rpos + req_len (consume)
                        # within 32 bits.
                        self.conn_reject(c, 413)
                        return FL_PROC_STOP
                    if self.rbuf_ensure(c, c.req_len - avail) < 0:
                        self.count_errno(self.counters.io_errors, ENOMEM)
                        self.conn_close(c)
                        return FL_PROC_STOP
            if not complete:
                if (c.req_flags & FL_REQ_EXPECT_CONTINUE) and not (c.req_flags & FL_REQ_HTTP10) \
                        and not (c.flags & CONN_F_CONTINUE_SENT):
                    if c.route >= 0:
                        # A static answer ignores the body: answer now instead of asking for it
                        # (RFC 9110 10.1.1), then close, since the body may still come.
                        if self.conn_put_static(c, &self.statics[c.route], c.req_flags & ~FL_REQ_KEEP_ALIVE) == 0:
                            self.counters.requests += 1
                            c.rpos = c.rlen = 0
                            c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
                        return FL_PROC_STOP
                    c.flags |= CONN_F_CONTINUE_SENT
                    if self.conn_put(c, CONTINUE_100, 25) < 0:
                        return FL_PROC_STOP
                return FL_PROC_MORE
            if c.route < 0:
                c.state = CONN_IN_HANDLER
                return FL_PROC_PY
            if self.conn_put_static(c, &self.statics[c.route], c.req_flags) < 0:
                return FL_PROC_STOP
            self.consume(c)

    cdef void consume(self, fl_conn *c) noexcept nogil:
        """The current request is answered: move on to the next one."""
        self.counters.requests += 1
        # req_len <= FL_RBUF_MAX here (conn_process rejects more; a streaming request's is 0)
        c.rpos += <uint32_t>c.req_len
        if c.rpos == c.rlen:
            c.rpos = c.rlen = 0
        c.scanned = 0
        c.state = CONN_READ_HEAD
        c.flags = (c.flags & ~CONN_F_CONTINUE_SENT) | CONN_F_NEW_REQUEST | CONN_F_USED
        if not (c.req_flags & FL_REQ_KEEP_ALIVE) or self.stopping:
            c.flags |= CONN_F_CLOSE_AFTER

    cdef void conn_reject(self, fl_conn *c, int status) noexcept nogil:
        """Answers a request that cannot be served with status, counted, then closes. Nothing
        after it on this connection is ever parsed as a request (no smuggling past an error)."""
        self.counters.parse_errors += 1
        self.counters.rejected[fl_status_index(status)] += 1
        self.note(status)
        self.conn_put_error(c, status)

    cdef void conn_put_error(self, fl_conn *c, int status) noexcept nogil:
        cdef fl_static *s = &fl_error_responses[fl_status_index(status)]
        c.rpos = c.rlen = c.scanned = 0
        c.state = CONN_READ_HEAD
        c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
        if self.conn_reserve(c, fl_error_len(s)) < 0:
            return
        c.wlen += fl_put_error(c.wbuf + c.wlen, s, self.date_line)

    cdef int conn_flush(self, fl_conn *c) noexcept nogil:
        """Sends buffered output until done or EAGAIN. Returns -1 if the connection closed."""
        cdef ssize_t n
        cdef int err
        while c.wsent < c.wlen:
            n = send(c.fd, c.wbuf + c.wsent, c.wlen - c.wsent, MSG_NOSIGNAL)
            if n >= 0:
                c.wsent += n
                self.counters.bytes_out += n
                continue
            err = errno
            if err == EAGAIN or err == EWOULDBLOCK:
                break  # the next writable edge resumes
            if err == EINTR:
                continue
            self.count_errno(self.counters.io_errors, err)
            self.conn_close(c)
            return -1
        if c.wsent == c.wlen:
            c.wsent = c.wlen = 0
            if c.wbuf != NULL:
                self.pool_put(c.wbuf, c.wcap)
                c.wbuf = NULL
                c.wcap = 0
        if (c.flags & CONN_F_PAUSED) and c.wlen - c.wsent < FL_LOW_WATER:
            # Room again: buffered requests are answered, and reading resumes, next turn.
            c.flags &= ~CONN_F_PAUSED
            self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
        return 0 if c.fd >= 0 else -1

    cdef void conn_settle(self, fl_conn *c) noexcept nogil:
        """After c was served: flush, then close it or put it on the timer its state needs."""
        if c.fd < 0 or (c.wsent < c.wlen and self.conn_flush(c) < 0):
            return
        if c.wsent < c.wlen:
            self.timer_set(c, FL_TIMER_WRITE)  # progress (or new output) restarts the clock
            return
        if c.state == CONN_CLOSING:
            return
        if c.flags & CONN_F_CLOSE_AFTER:
            if (c.flags & (CONN_F_LINGER | CONN_F_PEER_EOF)) == CONN_F_LINGER or \
                    (c.rpos < c.rlen and not (c.flags & CONN_F_PEER_EOF)):
                shutdown(c.fd, SHUT_WR)
                c.state = CONN_CLOSING
                self.release_buffers(c)
                self.timer_set(c, FL_TIMER_LINGER)
                self.conn_read(c, 0)  # the client may have closed already
            else:
                self.conn_close(c)
            return
        if c.state == CONN_IN_HANDLER:
            return
        if c.state == CONN_READ_BODY:
            self.timer_set(c, FL_TIMER_BODY)  # restarted by every step of progress
        elif c.rpos < c.rlen:
            if c.timer != FL_TIMER_HEADER or (c.flags & CONN_F_NEW_REQUEST):
                self.timer_set(c, FL_TIMER_HEADER)  # not restarted by each byte (slowloris)
        else:
            if self.stopping and (c.flags & CONN_F_USED):
                self.conn_close(c)
                return
            self.release_buffers(c)
            self.timer_set(c, FL_TIMER_IDLE)
        c.flags &= ~CONN_F_NEW_REQUEST

    cdef void conn_close(self, fl_conn *c) noexcept nogil:
        """Closes c exactly once and frees its slot; later events for it become stale."""
        if c.fd < 0:
            return
        self.timer_unlink(c)
        close(c.fd)  # also removes it from the poller
        c.fd = -1
        c.gen += 1
        c.state = CONN_READ_HEAD
        c.flags = 0
        c.rpos = c.rlen = c.scanned = 0
        c.wsent = c.wlen = 0
        self.release_buffers(c)
        if c.wbuf != NULL:
            self.pool_put(c.wbuf, c.wcap)
            c.wbuf = NULL
            c.wcap = 0
        self.counters.closed += 1
        self.counters.open -= 1
        if self.open_total != NULL:
            fl_atomic_add(self.open_total, -1)
        self.free_slots[self.nfree] = c.slot
        self.nfree += 1

    cdef void begin_stop(self) noexcept nogil:
        """Graceful stop. Connections still queued on the listener are taken (closing it would
        reset them), then it is closed. Idle connections are read once more, since a request
        may have arrived unread, and closed if none had; busy ones close once their answers
        (marked Connection: close) are sent. A new connection that has not sent its request
        yet gets FL_FRESH_GRACE_MS to do so. Whatever remains closes at the deadline."""
        if self.listener.fd >= 0:
            self.accept_all()
        self.close_listener()
        self.close_idle(False)

    cdef void close_idle(self, bint fresh_too) noexcept nogil:
        cdef uint32_t i
        cdef fl_conn *c
        for i in range(self.nslots):
            c = self.slots[i]
            if c.fd < 0 or c.state != CONN_READ_HEAD or c.rpos != c.rlen or c.wsent != c.wlen \
                    or (c.flags & CONN_F_QUEUED_PY):
                continue
            self.conn_read(c, FL_HUP)
            if c.fd < 0 or (c.flags & CONN_F_QUEUED_PY):
                continue
            if fresh_too and not (c.flags & CONN_F_USED) and c.state == CONN_READ_HEAD \
                    and c.rpos == c.rlen and c.wsent == c.wlen:
                self.conn_close(c)
            else:
                self.conn_settle(c)  # closes it if idle after a request, answers otherwise

    # ---- buffers --------------------------------------------------------------------------

    cdef char *pool_get(self) noexcept nogil:
        if self.npool:
            self.npool -= 1
            return self.pool[self.npool]
        return <char *>malloc(FL_BUF_SIZE)

    cdef void pool_put(self, char *buf, size_t cap) noexcept nogil:
        if cap == FL_BUF_SIZE and self.npool < FL_POOL_MAX:
            if self.pool == NULL:
                self.pool = <char **>malloc(FL_POOL_MAX * sizeof(char *))
                if self.pool == NULL:
                    free(buf)
                    return
            self.pool[self.npool] = buf
            self.npool += 1
        else:
            free(buf)

    cdef void release_buffers(self, fl_conn *c) noexcept nogil:
        # An idle connection holds no read buffer: thousands of idle clients cost little.
        if c.rbuf != NULL and c.rpos == c.rlen:
            self.pool_put(c.rbuf, c.rcap)
            c.rbuf = NULL
            c.rcap = 0
            c.rpos = c.rlen = 0

    cdef int rbuf_ensure(self, fl_conn *c, size_t need) noexcept nogil:
        """Makes room for need more bytes after c.rlen. Returns 0, or -1 when out of memory."""
        cdef size_t cap, live
        cdef char *nb
        if c.rbuf == NULL:
            c.rbuf = self.pool_get()
            if c.rbuf == NULL:
                return -1
            c.rcap = FL_BUF_SIZE
            c.rpos = c.rlen = 0
        if c.rcap - c.rlen >= need:
            return 0
        if c.rpos:
            # SAFETY: the parsed spans of earlier requests are no longer referenced.
            live = c.rlen - c.rpos
            memmove(c.rbuf, c.rbuf + c.rpos, live)
            c.rpos = 0
            c.rlen = <uint32_t>live
            if c.rcap - c.rlen >= need:
                return 0
        cap = c.rcap
        while cap - c.rlen < need:
            cap *= 2
        if cap > FL_RBUF_MAX:
            return -1
        nb = <char *>malloc(cap)
        if nb == NULL:
            return -1
        memcpy(nb, c.rbuf, c.rlen)
        self.pool_put(c.rbuf, c.rcap)
        c.rbuf = nb
        c.rcap = <uint32_t>cap
        return 0

    cdef int conn_reserve(self, fl_conn *c, size_t need) noexcept nogil:
        """Makes room for need more output bytes. Returns 0, or -1 (and closes c) without memory."""
        cdef size_t cap, live
        cdef char *nb
        if c.wbuf == NULL:
            cap = FL_BUF_SIZE
            while cap < need:
                cap *= 2
            c.wbuf = self.pool_get() if cap == FL_BUF_SIZE else <char *>malloc(cap)
            if c.wbuf == NULL:
                self.count_errno(self.counters.io_errors, ENOMEM)
                self.conn_close(c)
                return -1
            c.wcap = cap
            c.wsent = c.wlen = 0
            return 0
        if c.wcap - c.wlen >= need:
            return 0
        if c.wsent:
            live = c.wlen - c.wsent
            memmove(c.wbuf, c.wbuf + c.wsent, live)
            c.wsent = 0
            c.wlen = live
            if c.wcap - c.wlen >= need:
                return 0
        cap = c.wcap
        while cap - c.wlen < need:
            cap *= 2
        nb = <char *>malloc(cap)
        if nb == NULL:
            self.count_errno(self.counters.io_errors, ENOMEM)
            self.conn_close(c)
            return -1
        memcpy(nb, c.wbuf, c.wlen)
        self.pool_put(c.wbuf, c.wcap)
        c.wbuf = nb
        c.wcap = cap
        return 0

    cdef inline void put_raw(self, fl_conn *c, const char *p, size_t n) noexcept nogil:
        # Only after conn_reserve made room.
        memcpy(c.wbuf + c.wlen, p, n)
        c.wlen += n

    cdef int conn_put(self, fl_conn *c, const char *p, size_t n) noexcept nogil:
        if self.conn_reserve(c, n) < 0:
            return -1
        self.put_raw(c, p, n)
        return 0

    cdef const char *conn_header(self, int flags) noexcept nogil:
        """The Connection header this answer needs: close, keep-alive (HTTP/1.0), or none."""
        if not (flags & FL_REQ_KEEP_ALIVE) or self.stopping:
            return CONN_CLOSE
        if flags & FL_REQ_HTTP10:
            return CONN_KEEP_ALIVE
        return b""

    cdef int conn_put_static(self, fl_conn *c, fl_static *s, int flags) noexcept nogil:
        cdef const char *ch = self.conn_header(flags)
        cdef size_t chlen = strlen(ch)
        cdef size_t body = 0 if flags & FL_REQ_HEAD else s.body_len
        if self.conn_reserve(c, s.head_len + FL_DATE_LINE_LEN + chlen + 2 + body) < 0:
            return -1
        self.put_raw(c, s.head, s.head_len)
        self.put_raw(c, self.date_line, FL_DATE_LINE_LEN)
        self.put_raw(c, ch, chlen)
        self.put_raw(c, b"\r\n", 2)
        self.put_raw(c, s.body, body)
        return 0

    cdef void refresh_date(self) noexcept nogil:
        cdef int64_t sec = fl_wall_seconds()
        if sec != self.date_sec:
            self.date_sec = sec
            memcpy(self.date_line, b"Date: ", 6)
            fl_format_date(sec, self.date_line + 6)
            memcpy(self.date_line + 35, b"\r\n", 2)

    # ---- timers ---------------------------------------------------------------------------

    cdef void timer_unlink(self, fl_conn *c) noexcept nogil:
        cdef fl_timer_list *lst
        if c.timer == FL_TIMER_NONE:
            return
        lst = &self.timers[c.timer]
        if c.tprev != NULL:
            c.tprev.tnext = c.tnext
        else:
            lst.head = c.tnext
        if c.tnext != NULL:
            c.tnext.tprev = c.tprev
        else:
            lst.tail = c.tprev
        c.tprev = c.tnext = NULL
        c.timer = FL_TIMER_NONE

    cdef void timer_set(self, fl_conn *c, int kind) noexcept nogil:
        """(Re)starts c's timer of this kind: O(1), appended to a FIFO that stays sorted."""
        cdef fl_timer_list *lst = &self.timers[kind]
        self.timer_unlink(c)
        c.timer = kind
        c.deadline = self.now_ms + lst.duration_ms
        c.tprev = lst.tail
        c.tnext = NULL
        if lst.tail != NULL:
            lst.tail.tnext = c
        else:
            lst.head = c
        lst.tail = c

    cdef int64_t next_deadline(self) noexcept nogil:
        """The earliest deadline of any timer (each list's head), or -1."""
        cdef int kind
        cdef int64_t best = -1
        cdef fl_conn *c
        for kind in range(1, FL_NTIMERS):
            c = self.timers[kind].head
            if c != NULL and (best < 0 or c.deadline < best):
                best = c.deadline
        return best

    cdef void timers_expire(self, int64_t now) noexcept nogil:
        """Closes the connections whose deadline is now or earlier."""
        cdef int kind
        cdef fl_conn *c
        for kind in range(1, FL_NTIMERS):
            while True:
                c = self.timers[kind].head
                if c == NULL or c.deadline > now:
                    break
                self.timer_unlink(c)  # off the list even if closing fails below
                self.counters.timeouts[kind] += 1
                self.note(-kind)
                if (kind == FL_TIMER_HEADER or kind == FL_TIMER_BODY) and c.rpos < c.rlen:
                    # Best effort: one send of a 408, then close, whether it went out or not.
                    self.conn_put_error(c, 408)
                    if c.fd >= 0:
                        self.conn_flush(c)
                self.conn_close(c)

    # ---- the Python phase (with the GIL) --------------------------------------------------

    cdef void note(self, int what) noexcept nogil:
        """Remembers a rejection (an HTTP status) or a timeout (-kind) to log at DEBUG level
        after this turn: C code cannot log without the GIL, so notes wait for one batch."""
        if self.log_events and self.nevents_to_log < 64:
            self.events_to_log[self.nevents_to_log] = what
            self.nevents_to_log += 1

    cdef void flush_notes(self) noexcept:
        cdef int i, what
        try:
            for i in range(self.nevents_to_log):
                what = self.events_to_log[i]
                if what > 0:
                    log.debug("fastloop: worker %d rejected a request: %d", self.index, what)
                else:
                    log.debug("fastloop: worker %d closed a connection: %s timeout", self.index,
                              TIMER_NAMES[-what])
        except BaseException:
            pass  # a failing log handler must not take the worker down
        self.nevents_to_log = 0

    cdef void run_python(self) noexcept:
        cdef int j
        cdef fl_conn *c
        for j in range(self.npyq):
            c = self.conn_for(self.pyq[j])
            if c == NULL or c.state != CONN_IN_HANDLER:
                continue
            try:
                self.run_handlers(c)
            except BaseException:
                # Handler errors became 500s already; this is a fault in fastloop itself.
                log.exception("fastloop: internal error while answering a request; connection closed")
                self.count_errno(self.counters.io_errors, 0)
                self.conn_close(c)

    cdef void run_handlers(self, fl_conn *c):
        """Answers c's waiting request, then every request after it in the buffer."""
        cdef char *p
        cdef Request request
        cdef bint streaming
        while True:
            # SAFETY: the head was validated when it arrived and c.rbuf has not moved since:
            # nothing reads into a connection in the handler state but Request.stream(), and
            # only after make_request() has copied the head.
            p = c.rbuf + c.rpos
            streaming = (c.flags & CONN_F_STREAM) != 0
            request = make_request(p, c, 0 if streaming else c.body_len)
            if streaming:
                # The head now lives in the Request: drop it, so the body starts at rpos.
                c.rpos += c.head_len
                if c.req_flags & FL_REQ_CHUNKED:
                    fl_chunked_start(&c.chunked, 0)
                    c.body_left = 1
                else:
                    c.body_left = c.body_len  # the Content-Length, set with the head
                c.body_len = 0  # from here: body bytes handed to the handler
                request._worker = self
                request._token = fl_token(c)
                request._body = None
            try:
                respond(self, c, request, c.req_flags)
            finally:
                request._fd = -1  # the descriptor may be closed and reused once we return
                request._worker = None
            if c.fd < 0:
                return
            if streaming:
                c.flags &= ~CONN_F_STREAM
                c.req_len = 0  # what was read of the body is consumed already
                if c.body_left:
                    # The handler left part of the body unread: the answer said close (see
                    # emit), and a lingering close swallows the rest.
                    c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
            self.consume(c)
            if self.conn_process(c) != FL_PROC_PY:
                return

    cdef object stream_read(self, uint64_t token, size_t size):
        """The next piece of a streaming request's body (at most about size bytes), b"" at its
        end. Blocks this worker's thread while waiting for the client, up to the body timeout:
        a streaming handler holds its thread as a synchronous WSGI worker would."""
        cdef fl_conn *c = self.conn_for(token)
        cdef int rc
        cdef uint32_t avail, n
        cdef int64_t room
        if c == NULL or not (c.flags & CONN_F_STREAM):
            raise ConnectionError("the request is over: its body can only be read by its handler")
        if (c.req_flags & FL_REQ_EXPECT_CONTINUE) and not (c.req_flags & FL_REQ_HTTP10) \
                and not (c.flags & CONN_F_CONTINUE_SENT) and c.body_left:
            c.flags |= CONN_F_CONTINUE_SENT  # the handler reads the body: now ask for it
            if self.conn_put(c, CONTINUE_100, 25) < 0:
                raise ConnectionError("the client is gone")
            with nogil:
                rc = self.conn_flush_blocking(c)
            if rc < 0:
                raise_errno(-rc, "send")
        while c.body_left:
            avail = c.rlen - c.rpos
            if c.req_flags & FL_REQ_CHUNKED:
                if avail:
                    room = self.limits.body_bytes - <int64_t>c.body_len  # >= 0: the decoder keeps it
                    rc = fl_decode_chunked(c.rbuf + c.rpos, avail, &c.chunked, room)
                    if rc < 0:
                        c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
                        raise BodyError(-rc, "malformed chunked body" if rc == -400 else "request body too large")
                    n = c.chunked.out  # decoded bytes sit at the start of the buffer
                    data = PyBytes_FromStringAndSize(c.rbuf + c.rpos, n) if n else b""
                    # Rebase the decoder on what remains: decoded bytes are in Python now.
                    c.rpos += c.chunked.in_
                    c.chunked.in_ = c.chunked.out = 0
                    c.body_len += n
                    if rc == 1:
                        c.body_left = 0
                    if n:
                        return data
                    if rc == 1:
                        break
            elif avail:
                n = <uint32_t>min(<uint64_t>avail, c.body_left, <uint64_t>size)
                data = PyBytes_FromStringAndSize(c.rbuf + c.rpos, n)
                c.rpos += n
                c.body_left -= n
                c.body_len += n
                return data
            if c.rpos == c.rlen:
                c.rpos = c.rlen = 0
            with nogil:
                rc = self.conn_recv_blocking(c)
            if rc == 0:
                c.flags |= CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER
                raise ConnectionResetError("the client closed before sending the whole body")
            if rc < 0:
                c.flags |= CONN_F_CLOSE_AFTER
                raise_errno(-rc, "recv (request body)")
        if c.rpos == c.rlen:
            c.rpos = c.rlen = 0
        return b""

    cdef int conn_wait(self, fl_conn *c, int for_write) noexcept nogil:
        """Waits until c is readable (or writable): 0, or -ETIMEDOUT after the body (or the
        write) timeout, counted as that timeout."""
        cdef pollfd pfd
        cdef int rc
        cdef int kind = FL_TIMER_WRITE if for_write else FL_TIMER_BODY
        pfd.fd = c.fd
        pfd.events = POLLOUT if for_write else POLLIN
        while True:
            rc = poll(&pfd, 1, <int>self.timers[kind].duration_ms)
            if rc > 0:
                return 0
            if rc == 0:
                self.counters.timeouts[kind] += 1
                self.note(-kind)
                return -ETIMEDOUT
            if errno != EINTR:
                return -errno

    cdef int conn_recv_blocking(self, fl_conn *c) noexcept nogil:
        """Reads more of c into its buffer, waiting for it: bytes read, 0 at EOF, or -errno."""
        cdef ssize_t n
        cdef int rc
        if self.rbuf_ensure(c, FL_BUF_SIZE // 4) < 0:
            return -ENOMEM
        while True:
            n = recv(c.fd, c.rbuf + c.rlen, c.rcap - c.rlen, 0)
            if n > 0:
                c.rlen += <uint32_t>n
                self.counters.bytes_in += n
                return <int>n
            if n == 0:
                return 0
            if errno == EINTR:
                continue
            if errno != EAGAIN and errno != EWOULDBLOCK:
                return -errno
            rc = self.conn_wait(c, 0)
            if rc < 0:
                return rc

    cdef int conn_sendfile_blocking(self, fl_conn *c, int in_fd, int64_t off, int64_t count) noexcept nogil:
        """Sends c's buffered output, then count bytes of file in_fd from off, with sendfile,
        waiting for room. Returns 0 or -errno (-EIO if the file ended early)."""
        cdef ssize_t n
        cdef int rc = self.conn_flush_blocking(c)
        while rc == 0 and count > 0:
            n = fl_sendfile(c.fd, in_fd, &off, <size_t>min(count, <int64_t>1 << 30))
            if n > 0:
                count -= n
                self.counters.bytes_out += n
            elif n == 0:
                rc = -EIO  # the file is shorter than the Content-Length already sent
            elif n == -EAGAIN or n == -EWOULDBLOCK:
                rc = self.conn_wait(c, 1)
            elif n != -EINTR:
                rc = <int>n
        return rc

    cdef int conn_flush_blocking(self, fl_conn *c) noexcept nogil:
        """Sends all of c's output, waiting for room. Returns 0 or -errno."""
        cdef int rc
        while c.fd >= 0 and c.wsent < c.wlen:
            if self.conn_flush(c) < 0:
                return -EPIPE
            if c.wsent < c.wlen:
                rc = self.conn_wait(c, 1)
                if rc < 0:
                    return rc
        return 0 if c.fd >= 0 else -EPIPE
