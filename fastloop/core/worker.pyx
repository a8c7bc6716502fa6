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
    FL_WAIT_EVENTS = 512
    FL_DATE_LINE_LEN = 37         # "Date: " + 29 + CRLF
    FL_ACCEPT_RETRY_MS = 100      # after accept() failed on EMFILE and the like (nginx: 500)
    FL_FRESH_GRACE_MS = 1000      # stopping: how long a new connection may take to send its request
    FL_STAGE_MAX = 64             # pipelined requests gathered into one job (Worker.stage)
    FL_CHUNK_SLACK = 65536        # room a chunked body leaves in its buffer for undecoded framing

cdef extern from *:
    """
    /* The largest read buffer (rbuf_ensure doubles from FL_BUF_SIZE up to it): every offset
     * into one fits 32 bits. A buffered request (head and body) must fit in it; larger bodies
     * need a streaming route and get 413 otherwise. A macro: too large for an enum. */
    #define FL_RBUF_MAX ((uint64_t)1 << 31)
    """
    const uint64_t FL_RBUF_MAX

# conn_io_failed results
cdef enum:
    FL_IO_AGAIN = 0               # EAGAIN: drained (or full) until the next edge
    FL_IO_RETRY = 1               # EINTR: try again at once
    FL_IO_CLOSED = 2              # an error: the connection is closed

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


cdef inline bint fl_has_output(fl_conn *c) noexcept nogil:
    """Bytes, a file or queued answer messages still to go out on c."""
    return c.wsent < c.wlen or c.file_fd >= 0 or c.outq != NULL


cdef class Worker(Loop):
    """An event loop that owns connections. Built by Server; run() blocks its thread."""

    def __cinit__(self, *args, **kwargs):
        self.inbox = fl_inbox_new(&self.poller)
        if self.inbox == NULL:
            raise MemoryError()
        self.now_ms = fl_now_ms()
        self.date_sec = -1
        self.refresh_date()

    def __init__(self, int index, app, JobPool handlers, *, bint is_tcp=True,
                 dict limits=None, dict timeouts=None, ConnLimit conn_limit=None):
        tmo = dict(DEFAULT_TIMEOUTS, **(timeouts or {}))
        self.index = index
        self.is_tcp = is_tcp
        self.limits = limits_from(limits)
        # A chunked body is decoded in its read buffer, after a head of at most header_bytes
        # (<= FL_MAX_HEAD_BYTES, so this stays positive) and before undecoded framing.
        self.buffered_chunked_max = min(self.limits.body_bytes,
                                        <int64_t>FL_RBUF_MAX - self.limits.header_bytes - FL_CHUNK_SLACK)
        self.log_events = log.isEnabledFor(logging.DEBUG)
        self.on_rejected = getattr(app, "_on_rejected", None)  # the access log (_observe.py)
        self.conn_limit = conn_limit
        if conn_limit is not None:
            # SAFETY: self.conn_limit keeps the shared counter alive as long as this worker.
            self.open_total = conn_limit.count
            self.max_open = conn_limit.limit
        for i, name in enumerate(TIMER_NAMES):
            if i:
                self.timers[i].duration_ms = <int64_t>(tmo[name] * 1000)
        # SAFETY: self.handler_pool keeps the pool alive as long as this worker.
        self.handler_pool = handlers
        self.handlers = handlers.c_pool()
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
        # ASGI: every request with a body streams it to the application (http.request with
        # more_body); bodiless ones still go in batches.
        self.stream_bodies = bool(getattr(app, "_stream_bodies", False))

    def stats(self):
        """Loop.stats(), with the answers that came after this loop had stopped (its inbox
        drops them) counted among the late ones."""
        cdef uint64_t dropped
        out = Loop.stats(self)
        with nogil:
            pthread_mutex_lock(&self.inbox.lock)
            dropped = self.inbox.dropped
            pthread_mutex_unlock(&self.inbox.lock)
        out["late_answers"] += dropped
        return out

    def __dealloc__(self):
        cdef uint32_t i
        cdef fl_conn *c
        for i in range(self.nslots):
            c = self.slots[i]
            if c.fd >= 0:
                self.conn_close(c)
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
        free(self.resume)
        free(self.touched)
        free(self.statics)
        free(self.streams)
        if self.inbox != NULL:
            fl_inbox_close(self.inbox)  # late answers are dropped from now on
            fl_inbox_release(self.inbox)

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
                    self.stop_phase = FL_STOP_GRACE_OVER
                    self.close_idle(True)
                    fresh_closed = True
                if self.counters.open == 0 or self.now_ms >= self.stop_deadline:
                    if self.nevents_to_log or self.nrejected_to_log:
                        with gil:
                            self.flush_notes()  # the last turn's, not lost with the loop
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
            if self.nevents_to_log or self.nrejected_to_log:
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
            # Expire as of the wait: a connection whose request arrived while a handler held
            # this thread has its event in the next wait, and is served, not timed out.
            self.timers_expire(wait_now)
            if self.njobs:
                # Every request of this turn that needs Python (timers' flushes included), to
                # the handler threads at once.
                fl_pool_push(self.handlers, self.jobs_first, self.jobs_last, self.njobs)
                self.jobs_first = self.jobs_last = NULL
                self.njobs = 0
        self.take_inbox()  # in transit from the acceptor: registered, then closed with the rest
        for i in range(<int>self.nslots):
            if self.slots[i].fd >= 0:
                self.conn_close(self.slots[i])
        while self.jobs_first != NULL:  # made by the last messages, never queued
            c_job = self.jobs_first
            self.jobs_first = c_job.next
            fl_job_release(c_job)
        self.jobs_last = NULL
        self.njobs = 0
        fl_inbox_close(self.inbox)  # answers still coming are dropped and counted
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
        cdef fl_msg *m = fl_inbox_take(self.inbox, &fds, &n)
        for i in range(n):
            self.counters.accepted += 1
            self.counters.open += 1
            self.adopt(fds[i])
        free(fds)
        if m != NULL:
            self.take_messages(m)

    cdef void take_messages(self, fl_msg *m) noexcept nogil:
        """Appends each answer message to its connection's queue, in order, then writes each
        connection touched once: answers that arrived together leave together."""
        cdef fl_msg *nxt
        cdef fl_conn *c
        cdef fl_conn *touched = NULL
        while m != NULL:
            nxt = m.next
            m.next = NULL
            c = self.conn_for(m.token)
            if c == NULL or c.job == NULL:
                self.counters.late += 1  # its connection closed (or its answer was cut) meanwhile
                fl_msg_free(m)
            else:
                if c.outq_tail != NULL:
                    c.outq_tail.next = m
                else:
                    c.outq = m
                    self.queue(&self.touched, &self.ntouched, &self.cap_touched, c)
                c.outq_tail = m
            m = nxt
        for i in range(self.ntouched):
            c = self.conn_for(self.touched[i])
            if c != NULL and c.outq != NULL:
                self.conn_pump(c)
                if c.fd >= 0:
                    self.conn_settle(c)
        self.ntouched = 0

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
        c.job = NULL
        c.outq = c.outq_tail = NULL
        c.file_fd = -1
        c.file_end = 0
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
        if (mask & FL_WRITABLE) and fl_has_output(c):
            if self.conn_flush(c) < 0:
                return
        if mask & FL_READABLE:
            self.conn_read(c, mask)
        if c.fd >= 0:
            self.conn_settle(c)

    cdef void conn_read(self, fl_conn *c, int mask) noexcept nogil:
        cdef char discard[4096]
        cdef ssize_t n
        cdef size_t space
        cdef int rc, err
        cdef int64_t budget = FL_READ_BUDGET
        if mask & FL_HUP:
            c.flags |= CONN_F_HUP
        elif c.flags & CONN_F_HUP:
            # The edge that announced the peer's FIN was spent earlier (the reading stopped for
            # a handler): a short read no longer means the EOF is not there yet.
            mask |= FL_HUP
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
        if c.state == CONN_IN_HANDLER:
            if (c.flags & CONN_F_STREAM) and c.body_left and not (c.flags & (CONN_F_BODY_FULL | CONN_F_PEER_EOF)):
                self.conn_read_body(c)  # a streaming route's handler takes the body as it comes
                return
            if (mask & FL_HUP) and c.job != NULL:
                fl_job_peer_eof(c.job)  # an ASGI app learns of it (http.disconnect)
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
                if (c.flags & CONN_F_STREAM) and c.body_left and not (c.flags & CONN_F_BODY_FULL):
                    self.conn_read_body(c)
                    return
                c.flags |= CONN_F_READ_MORE  # the socket was not read yet
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
                    if (c.flags & CONN_F_STREAM) and c.state == CONN_IN_HANDLER:
                        if c.body_left and not (c.flags & CONN_F_BODY_FULL):
                            self.conn_read_body(c)  # the body goes on to its handler
                        return
                    if <size_t>n == space or (mask & FL_HUP):
                        c.flags |= CONN_F_READ_MORE  # not known to be drained (see below)
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
                if self.conn_io_failed(c, errno) == FL_IO_RETRY:
                    continue
                return  # EAGAIN: drained; anything else closed c

    cdef int conn_process(self, fl_conn *c) noexcept nogil:
        """Answers every complete request in c's buffer that C can answer, and gathers the
        ones that need Python (with every complete request after them, in order) into one job
        (conn_stage, conn_end_process): pipelined requests reach a handler thread together and
        their answers come back together. Every return goes through conn_end_process, and so
        does everything that could move the buffer while requests are staged in it."""
        cdef char *p
        cdef uint32_t avail
        cdef Py_ssize_t end
        cdef int rc
        cdef int64_t cl
        cdef bint complete
        while True:
            if c.flags & CONN_F_CLOSE_AFTER:
                return self.conn_end_process(c, FL_PROC_STOP)
            if self.nstage == FL_STAGE_MAX:
                return self.conn_end_process(c, FL_PROC_MORE)
            if c.wlen - c.wsent > FL_HIGH_WATER:
                # Backpressure: the client is not reading its answers, so stop reading its
                # requests; TCP flow control then slows it down. Memory stays bounded.
                c.flags |= CONN_F_PAUSED
                return self.conn_end_process(c, FL_PROC_STOP)
            p = c.rbuf + c.rpos
            avail = c.rlen - c.rpos
            if c.state == CONN_READ_HEAD:
                # RFC 9112 2.2: ignore empty lines received before a request-line.
                while avail >= 2 and p[0] == c'\r' and p[1] == c'\n':
                    c.rpos += 2
                    p += 2
                    avail -= 2
                if avail == 0:
                    # (Staged bytes stay where they are until conn_end_process copies them.)
                    c.rpos = c.rlen = c.scanned = 0
                    return self.conn_end_process(c, FL_PROC_MORE)
                end = fl_frame_head(p, avail, &c.scanned, &self.req, &self.limits)
                if end == 0:
                    return self.conn_end_process(c, FL_PROC_MORE)
                if end < 0:
                    if self.nstage:
                        # Answer what came before first; this head is parsed (and rejected)
                        # again once those answers are out.
                        c.scanned = 0
                        return self.conn_end_process(c, FL_PROC_MORE)
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
                if c.route < 0 or self.nstage:
                    # What a handler's Request is built from (a job copies it); a static answer
                    # needs none of it, unless it is staged behind a Python request.
                    c.line.method = self.req.method
                    c.line.path = self.req.path
                    c.line.query = self.req.query
                    c.line.authority = self.req.authority
                    c.line.minor = self.req.minor
                if c.route < 0 and ((self.stream_bodies and (cl or (self.req.flags & FL_REQ_CHUNKED)))
                                    or fl_match_path(self.streams, self.nstreams, p, self.req.path) >= 0):
                    if self.nstage:
                        c.scanned = 0  # after the staged answers, from its head again
                        return self.conn_end_process(c, FL_PROC_MORE)
                    # A streaming route: its handler runs now and reads the body as it arrives
                    # (Request.stream), instead of after all of it is buffered.
                    c.flags |= CONN_F_STREAM
                    return FL_PROC_PY if self.conn_start_job(c) == 0 else FL_PROC_STOP
                c.state = CONN_READ_BODY
            # CONN_READ_BODY: wait until the whole body is buffered (and decoded, if chunked)
            if c.req_flags & FL_REQ_CHUNKED:
                rc = fl_decode_chunked(p, avail, &c.chunked, self.buffered_chunked_max)
                if rc < 0:
                    if self.nstage:
                        # Its framing may be half decoded already: cut the connection after
                        # the staged answers (no answer of this request could be right).
                        c.flags |= CONN_F_CLOSE_AFTER
                        return self.conn_end_process(c, FL_PROC_STOP)
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
                if not complete and self.nstage:
                    # Growing the buffer would move the staged requests: hand them over first.
                    return self.conn_end_process(c, FL_PROC_MORE)
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
                if self.nstage:
                    return self.conn_end_process(c, FL_PROC_MORE)
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
            if c.route < 0 or self.nstage:
                # Python's, or behind a request that is: answered by the route's Python twin
                # (App.static registers one), so that answers stay in request order.
                self.conn_stage(c)
                continue
            if self.conn_put_static(c, &self.statics[c.route], c.req_flags) < 0:
                return FL_PROC_STOP
            self.consume(c)

    cdef int conn_stage(self, fl_conn *c) noexcept nogil:
        """Adds c's current request (complete) to the job being gathered and moves past it,
        as consume() would, but without counting it (its answer is not there yet)."""
        cdef fl_jobreq *q = &self.stage[self.nstage]
        q.off = c.rpos
        q.head_len = c.head_len
        q.body_len = c.body_len
        q.line = c.line
        q.req_flags = c.req_flags
        self.nstage += 1
        self.stage_bytes += c.head_len + c.body_len
        self.conn_past_request(c)  # its bytes stay where they are until conn_end_process
        return 0

    cdef int conn_end_process(self, fl_conn *c, int rc) noexcept nogil:
        """conn_process returns through here: staged requests become one job, copied out of
        the buffer before anything can move it. Returns FL_PROC_PY then, else rc."""
        cdef fl_job *j
        cdef fl_jobreq *q
        cdef size_t at = 0
        cdef int i
        if self.nstage == 0:
            return rc
        j = fl_job_new(self.inbox, fl_token(c), c.fd, self.stage_bytes, self.nstage)
        if j == NULL:
            self.nstage = 0
            self.stage_bytes = 0
            self.count_errno(self.counters.io_errors, ENOMEM)
            self.conn_close(c)
            return FL_PROC_STOP
        for i in range(self.nstage):
            q = &j.reqs[i]
            q[0] = self.stage[i]
            # SAFETY: each staged request is complete in c.rbuf at q.off (head, then its
            # decoded body): nothing moved the buffer since conn_stage (see conn_process).
            memcpy(j.req + at, c.rbuf + q.off, q.head_len + q.body_len)
            q.off = <uint32_t>at
            at += q.head_len + q.body_len
        self.nstage = 0
        self.stage_bytes = 0
        c.resume_state = c.state
        c.state = CONN_IN_HANDLER
        c.job = j
        c.flags &= ~CONN_F_ANSWERED
        self.queue_job(j)
        return FL_PROC_PY

    cdef void queue_job(self, fl_job *j) noexcept nogil:
        j.pool = self.handlers  # where its handler waits (fl_job_wake)
        j.next = NULL
        if self.jobs_last != NULL:
            self.jobs_last.next = j
        else:
            self.jobs_first = j
        self.jobs_last = j
        self.njobs += 1

    cdef void consume(self, fl_conn *c) noexcept nogil:
        """The current request is answered: move on to the next one."""
        self.counters.requests += 1
        self.conn_past_request(c)
        if c.rpos == c.rlen:
            c.rpos = c.rlen = 0

    cdef void conn_past_request(self, fl_conn *c) noexcept nogil:
        """Moves c's parsing past its current request (answered, or staged for a job)."""
        # req_len <= FL_RBUF_MAX here (conn_process rejects more; a streaming request's is 0)
        c.rpos += <uint32_t>c.req_len
        c.scanned = 0
        c.state = CONN_READ_HEAD
        c.flags = (c.flags & ~CONN_F_CONTINUE_SENT) | CONN_F_NEW_REQUEST | CONN_F_USED
        # stop_phase, not stopping: the answer said close only if the stop had begun when it
        # was made (conn_header, and the handlers' inbox.stopping, set with it).
        if not (c.req_flags & FL_REQ_KEEP_ALIVE) or self.stop_phase != FL_STOP_NONE:
            c.flags |= CONN_F_CLOSE_AFTER  # nothing after it is a request of this connection

    cdef void conn_reject(self, fl_conn *c, int status) noexcept nogil:
        """Answers a request that cannot be served with status, counted, then closes. Nothing
        after it on this connection is ever parsed as a request (no smuggling past an error)."""
        self.counters.parse_errors += 1
        self.counters.rejected[fl_status_index(status)] += 1
        self.note(status)
        self.note_rejected(c, status)
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
        """Sends buffered output, then the file being sent, then what waits behind it, until
        done or EAGAIN. Returns -1 if the connection closed."""
        cdef ssize_t n
        cdef int err, end
        while True:
            while c.wsent < c.wlen:
                n = send(c.fd, c.wbuf + c.wsent, c.wlen - c.wsent, MSG_NOSIGNAL)
                if n >= 0:
                    c.wsent += n
                    self.counters.bytes_out += n
                    if c.job != NULL:
                        fl_job_sent(c.job, <uint64_t>n)  # a streaming producer may go on
                    continue
                err = self.conn_io_failed(c, errno)
                if err == FL_IO_RETRY:
                    continue
                if err == FL_IO_CLOSED:
                    return -1
                break  # EAGAIN: the next writable edge resumes
            if c.wsent < c.wlen:
                break
            c.wsent = c.wlen = 0
            if c.wbuf != NULL:
                self.pool_put(c.wbuf, c.wcap)
                c.wbuf = NULL
                c.wcap = 0
            if c.file_fd >= 0:
                while c.file_left > 0:
                    n = fl_sendfile(c.fd, c.file_fd, &c.file_off, <size_t>min(c.file_left, <int64_t>1 << 30))
                    if n > 0:
                        c.file_left -= n
                        self.counters.bytes_out += n
                        if c.job != NULL:
                            fl_job_sent(c.job, <uint64_t>n)
                    elif n == 0:
                        # The file shrank since its length was announced: cut the answer.
                        c.file_left = 0
                        c.file_end |= END_CLOSE | END_CUT
                    elif n == -EAGAIN or n == -EWOULDBLOCK:
                        break
                    elif n != -EINTR:
                        self.count_errno(self.counters.io_errors, <int>-n)
                        self.conn_close(c)
                        return -1
                if c.file_left > 0:
                    break
                close(c.file_fd)
                c.file_fd = -1
                end = c.file_end
                c.file_end = 0
                if end:
                    self.conn_answer_done(c, end, c.file_answered)  # may answer what follows
                    if c.fd < 0:
                        return -1
                continue
            if c.outq != NULL:
                self.conn_pump(c)
                if c.fd < 0:
                    return -1
                if c.wsent < c.wlen or c.file_fd >= 0:
                    continue
            break
        if c.flags & CONN_F_JOB_WAITS:
            self.conn_resume_job(c)
        if (c.flags & CONN_F_PAUSED) and c.wlen - c.wsent < FL_LOW_WATER and c.file_fd < 0:
            # Room again: buffered requests are answered, and reading resumes, next turn.
            c.flags &= ~CONN_F_PAUSED
            self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
        return 0 if c.fd >= 0 else -1

    cdef void conn_pump(self, fl_conn *c) noexcept nogil:
        """Moves c's answer messages into its output, in order, up to the next file (which
        conn_flush sends first). The message that ends an answer lets the next request in."""
        cdef fl_msg *m
        cdef int flags, answered
        while c.outq != NULL and c.file_fd < 0 and c.fd >= 0:
            m = c.outq
            c.outq = m.next
            if c.outq == NULL:
                c.outq_tail = NULL
            flags = m.flags
            if m.kind == MSG_DATA:
                if m.len:
                    c.flags |= CONN_F_ANSWERED
                    if c.wsent == c.wlen and m.data != NULL:
                        # Nothing else waits to be sent: the message's buffer becomes the output.
                        if c.wbuf != NULL:
                            self.pool_put(c.wbuf, c.wcap)
                        c.wbuf = m.data
                        c.wcap = m.len
                        c.wsent = 0
                        c.wlen = m.len
                        m.data = NULL
                    elif self.conn_put(c, m.data, m.len) < 0:
                        fl_msg_free(m)
                        return
            elif m.kind == MSG_FILE:
                c.flags |= CONN_F_ANSWERED
                c.file_fd = m.fd
                m.fd = -1
                c.file_off = m.off
                c.file_left = m.count
            elif m.kind == MSG_CONTINUE:
                # RFC 9110 10.1.1: only while it can still help: no answer begun, body to come.
                if not (c.flags & (CONN_F_ANSWERED | CONN_F_CONTINUE_SENT)) and c.body_left:
                    c.flags |= CONN_F_CONTINUE_SENT
                    if self.conn_put(c, CONTINUE_100, 25) < 0:
                        fl_msg_free(m)
                        return
            elif m.kind == MSG_READ:
                if c.flags & CONN_F_BODY_FULL:
                    c.flags &= ~CONN_F_BODY_FULL
                    self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
            answered = <int>m.count
            fl_msg_free(m)
            if flags & MSG_F_END:
                if c.file_fd >= 0:
                    c.file_end = flags  # applied once the file is sent
                    c.file_answered = answered
                else:
                    self.conn_answer_done(c, flags, answered)

    cdef void conn_answer_done(self, fl_conn *c, int flags, int answered) noexcept nogil:
        """The handler's answers to c's job are complete (and queued in order): finish its
        requests and answer what is buffered after them."""
        cdef fl_job *j = c.job
        cdef bint stream = (c.flags & CONN_F_STREAM) != 0
        cdef bint keep
        if (flags & END_MORE) and j != NULL:
            # Answered up to j.start; the rest waits for the client to read (conn_flush).
            self.counters.requests += answered
            c.flags |= CONN_F_JOB_WAITS
            self.conn_resume_job(c)  # unless it caught up already
            return
        c.job = NULL
        if j != NULL:
            fl_job_release(j)
        if flags & END_CUT:
            # The head is out already: no 500 can follow. Cut the connection, so the client
            # sees an incomplete answer rather than a wrong one.
            c.flags |= CONN_F_CLOSE_AFTER
            c.flags &= ~CONN_F_LINGER
        elif flags & END_CLOSE:
            c.req_flags &= ~FL_REQ_KEEP_ALIVE
            c.flags |= CONN_F_CLOSE_AFTER
        if stream:
            c.flags &= ~(CONN_F_STREAM | CONN_F_BODY_FULL)
            c.req_len = 0  # what was read of the body is consumed already
            if c.body_left:
                # The handler left part of the body unread: the answer said close, and a
                # lingering close swallows the rest.
                c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
            keep = not (c.flags & CONN_F_CLOSE_AFTER) and (c.req_flags & FL_REQ_KEEP_ALIVE) != 0
            self.consume(c)
            if keep:
                # It went out keep-alive: even in a stop, the next request is answered (below).
                c.flags &= ~CONN_F_CLOSE_AFTER

        else:
            # The staged requests were moved past already (conn_stage): count them.
            self.counters.requests += answered
            if flags & END_CLOSE:
                c.flags |= CONN_F_CLOSE_AFTER  # nothing after an answer that closes
            c.state = c.resume_state
            if c.rpos == c.rlen:
                c.rpos = c.rlen = 0
            # Stopping or not, only an answer that said "Connection: close" closes: one that
            # went out as keep-alive (its handler ran before the stop) invites the next
            # request, which is then answered with close, not reset or read and dropped.
        c.flags &= ~CONN_F_JOB_WAITS
        if c.rpos < c.rlen and not (c.flags & CONN_F_CLOSE_AFTER):
            self.conn_process(c)  # pipelined requests waited for these answers
        if c.fd >= 0 and c.state != CONN_IN_HANDLER and (c.flags & CONN_F_READ_MORE):
            c.flags &= ~CONN_F_READ_MORE
            self.queue(&self.resume, &self.nresume, &self.cap_resume, c)

    cdef void conn_resume_job(self, fl_conn *c) noexcept nogil:
        """A job held back for a client that did not read (END_MORE) goes back to the handler
        threads once the client has caught up."""
        if c.wlen - c.wsent < FL_LOW_WATER and c.file_fd < 0 and c.outq == NULL:
            c.flags &= ~CONN_F_JOB_WAITS
            fl_atomic_add_int(&c.job.refs, 1)  # the handler's reference, again
            self.queue_job(c.job)

    cdef int conn_start_job(self, fl_conn *c) noexcept nogil:
        """Hands a streaming route's request (its head) to the handler threads: copied into a
        job queued at the end of this turn; its body follows as it arrives. 0, or -1 (closed)."""
        cdef bint stream = (c.flags & CONN_F_STREAM) != 0
        cdef size_t size = c.head_len + (0 if stream else c.body_len)
        cdef fl_job *j = fl_job_new(self.inbox, fl_token(c), c.fd, size, 1)
        if j == NULL:
            self.count_errno(self.counters.io_errors, ENOMEM)
            self.conn_close(c)
            return -1
        # SAFETY: the head (and body) are complete in c.rbuf from rpos; copied, so the buffer
        # may move or be reused while the handler runs.
        memcpy(j.req, c.rbuf + c.rpos, size)
        j.reqs[0].off = 0
        j.reqs[0].head_len = c.head_len
        j.reqs[0].body_len = 0 if stream else c.body_len
        j.reqs[0].line = c.line
        j.reqs[0].req_flags = c.req_flags
        j.stream = stream
        c.job = j
        c.state = CONN_IN_HANDLER
        c.flags &= ~CONN_F_ANSWERED
        self.queue_job(j)
        if stream:
            # The head is in the job: drop it, so the body starts at rpos.
            c.rpos += c.head_len
            if c.req_flags & FL_REQ_CHUNKED:
                fl_chunked_start(&c.chunked, 0)
                c.body_left = 1
            else:
                c.body_left = c.body_len  # the Content-Length, set with the head
            c.body_len = 0  # from here: body bytes handed to the handler
            if c.body_left == 0:
                fl_job_give_body(j, NULL, 0, 1)
            elif c.rpos < c.rlen:
                self.conn_deliver_body(c)
        return 0

    cdef int conn_deliver_body(self, fl_conn *c) noexcept nogil:
        """Hands the body bytes buffered for a streaming route to its handler: 0 for more,
        1 to stop reading (the handler holds enough, or the body ended or failed)."""
        cdef uint32_t avail = c.rlen - c.rpos
        cdef uint32_t n
        cdef int rc, full
        cdef int64_t room
        if c.req_flags & FL_REQ_CHUNKED:
            room = self.limits.body_bytes - <int64_t>c.body_len
            rc = fl_decode_chunked(c.rbuf + c.rpos, avail, &c.chunked, room)
            if rc < 0:
                fl_job_give_body(c.job, NULL, 0, rc)
                c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
                c.rpos = c.rlen = 0
                return 1
            n = c.chunked.out  # decoded bytes sit at the start of the buffer
            full = fl_job_give_body(c.job, c.rbuf + c.rpos, n, 1 if rc == 1 else 0)
            # Rebase the decoder on what remains: decoded bytes are the handler's now.
            c.rpos += c.chunked.in_
            c.chunked.in_ = c.chunked.out = 0
            c.body_len += n
            if rc == 1:
                c.body_left = 0
        else:
            n = <uint32_t>min(<uint64_t>avail, c.body_left)
            c.body_left -= n
            full = fl_job_give_body(c.job, c.rbuf + c.rpos, n, 1 if c.body_left == 0 else 0)
            c.rpos += n
            c.body_len += n
        if c.rpos == c.rlen:
            c.rpos = c.rlen = 0
        if full < 0:
            self.count_errno(self.counters.io_errors, ENOMEM)
            self.conn_close(c)
            return 1
        if full:
            c.flags |= CONN_F_BODY_FULL
            return 1
        return 1 if c.body_left == 0 else 0

    cdef void conn_read_body(self, fl_conn *c) noexcept nogil:
        """Reads a streaming route's body from the socket for its handler, until EAGAIN, the
        end of the body, or the handler holding enough (it posts MSG_READ to resume)."""
        cdef ssize_t n
        cdef int err
        cdef int64_t budget = FL_READ_BUDGET
        while True:
            if self.rbuf_ensure(c, 1) < 0:
                self.count_errno(self.counters.io_errors, ENOMEM)
                self.conn_close(c)
                return
            n = recv(c.fd, c.rbuf + c.rlen, c.rcap - c.rlen, 0)
            if n > 0:
                c.rlen += <uint32_t>n
                self.counters.bytes_in += n
                if self.conn_deliver_body(c):
                    c.flags |= CONN_F_READ_MORE  # the rest waits for the handler or its answer
                    return
                budget -= n
                if budget <= 0:
                    self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
                    return
            elif n == 0:
                fl_job_give_body(c.job, NULL, 0, -1)  # the body can never be complete
                c.flags |= CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER
                return
            else:
                if self.conn_io_failed(c, errno) == FL_IO_RETRY:
                    continue
                return  # EAGAIN: drained; anything else closed c

    cdef int conn_io_failed(self, fl_conn *c, int err) noexcept nogil:
        """What a failed recv() or send() on c means: FL_IO_AGAIN (EAGAIN: wait for the next
        edge), FL_IO_RETRY (EINTR), or FL_IO_CLOSED (any other error: counted, c closed)."""
        if err == EAGAIN or err == EWOULDBLOCK:
            return FL_IO_AGAIN
        if err == EINTR:
            return FL_IO_RETRY
        self.count_errno(self.counters.io_errors, err)
        self.conn_close(c)
        return FL_IO_CLOSED

    cdef void conn_drop_output(self, fl_conn *c) noexcept nogil:
        """Frees what c had still to send: queued messages and a file being sent."""
        cdef fl_msg *m
        while c.outq != NULL:
            m = c.outq
            c.outq = m.next
            fl_msg_free(m)
        c.outq_tail = NULL
        if c.file_fd >= 0:
            close(c.file_fd)
            c.file_fd = -1
        c.file_end = 0

    cdef void conn_settle(self, fl_conn *c) noexcept nogil:
        """After c was served: flush, then close it or put it on the timer its state needs."""
        if c.fd < 0 or (fl_has_output(c) and self.conn_flush(c) < 0):
            return
        if fl_has_output(c):
            self.timer_set(c, FL_TIMER_WRITE)  # progress (or new output) restarts the clock
            return
        if c.state == CONN_CLOSING:
            return
        if c.state == CONN_IN_HANDLER:
            # Its answer is still to come, even when the client stopped sending (half-close).
            if (c.flags & CONN_F_STREAM) and c.body_left and \
                    not (c.flags & (CONN_F_BODY_FULL | CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER)):
                self.timer_set(c, FL_TIMER_BODY)  # the client owes body bytes
            else:
                self.timer_unlink(c)  # the handler's time is its own
            return
        if c.flags & CONN_F_CLOSE_AFTER:
            # Linger when input may be left unread, buffered or still in the socket (reading
            # stopped for a handler, or a client pipelining into a graceful stop): closing then
            # would reset the answers away (RFC 9112 9.6).
            if (c.flags & (CONN_F_LINGER | CONN_F_PEER_EOF)) == CONN_F_LINGER or \
                    ((c.rpos < c.rlen or (c.flags & CONN_F_READ_MORE) or self.stopping)
                     and not (c.flags & CONN_F_PEER_EOF)):
                shutdown(c.fd, SHUT_WR)
                c.state = CONN_CLOSING
                self.release_buffers(c)
                self.timer_set(c, FL_TIMER_LINGER)
                self.conn_read(c, 0)  # the client may have closed already
            else:
                self.conn_close(c)
            return
        if c.state == CONN_READ_BODY:
            self.timer_set(c, FL_TIMER_BODY)  # restarted by every step of progress
        elif c.rpos < c.rlen:
            if c.timer != FL_TIMER_HEADER or (c.flags & CONN_F_NEW_REQUEST):
                self.timer_set(c, FL_TIMER_HEADER)  # not restarted by each byte (slowloris)
        else:
            if self.stop_phase == FL_STOP_GRACE_OVER and (c.flags & CONN_F_USED):
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
        if c.job != NULL:
            # Its handler is still running: it stops waiting, and what it posts is dropped.
            self.counters.aborted += 1
            fl_job_gone(c.job)  # before close(): the descriptor number may be reused at once
            c.job = NULL
        self.conn_drop_output(c)
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
        reset them), then it is closed. Busy connections close once their answers (marked
        Connection: close) are sent. Idle ones, new or kept alive, get FL_FRESH_GRACE_MS to
        send a request, which is answered with Connection: close: a keep-alive client whose
        last answer went out just before the stop sends its next request at once, and closing
        then would reset it (RFC 9112 9.6). At the end of the grace the idle ones are read
        once more and closed: only a request sent at that instant races the close. Whatever
        remains closes at the deadline."""
        if self.listener.fd >= 0:
            self.accept_all()
        self.close_listener()
        self.stop_phase = FL_STOP_BEGUN
        # Answers from now on say Connection: close; handler threads read it (core/atomic.h).
        fl_atomic_store_int(&self.inbox.stopping, 1)
        self.close_idle(False)

    cdef void close_idle(self, bint fresh_too) noexcept nogil:
        cdef uint32_t i
        cdef fl_conn *c
        for i in range(self.nslots):
            c = self.slots[i]
            if c.fd < 0 or c.state != CONN_READ_HEAD or c.rpos != c.rlen or fl_has_output(c):
                continue
            self.conn_read(c, FL_HUP)
            if c.fd < 0 or c.state == CONN_IN_HANDLER:
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
        if not (flags & FL_REQ_KEEP_ALIVE) or self.stop_phase != FL_STOP_NONE:
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
        fl_refresh_date_line(&self.date_sec, self.date_line)

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
                if kind == FL_TIMER_BODY and c.state == CONN_IN_HANDLER:
                    # A streaming route's client stopped sending its body: its handler's read
                    # fails with 408, and the connection closes after the handler's answer.
                    fl_job_give_body(c.job, NULL, 0, -408)
                    c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
                    continue
                if (kind == FL_TIMER_HEADER or kind == FL_TIMER_BODY) and c.rpos < c.rlen:
                    # Best effort: one send of a 408, then close, whether it went out or not.
                    self.note_rejected(c, 408)
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

    cdef void note_rejected(self, fl_conn *c, int status) noexcept nogil:
        """For the access log (on_rejected): the client and the request line, as far as it was
        read, of a request the core answers itself with status. Taken now, while the request
        is in c's buffer and the descriptor open; logged after this turn (flush_notes). Past
        64 in one turn the rest are only counted (stats()["rejected"])."""
        cdef fl_rejected *r
        cdef const char *p
        cdef uint32_t n = 0, avail
        if self.on_rejected is None or self.nrejected_to_log >= 64:
            return
        r = &self.rejected_to_log[self.nrejected_to_log]
        self.nrejected_to_log += 1
        r.status = status
        r.sent = fl_error_responses[fl_status_index(status)].body_len
        if fl_socket_address(c.fd, 1, r.host, sizeof(r.host), &r.port) < 0:
            r.host[0] = 0
            r.port = -1
        if c.rbuf != NULL and c.rpos < c.rlen:
            # SAFETY: rbuf holds rlen bytes, the current request from rpos; copied, not kept.
            p = c.rbuf + c.rpos
            avail = c.rlen - c.rpos
            while n < avail and n < sizeof(r.line) and p[n] != b'\r' and p[n] != b'\n':
                n += 1
            memcpy(r.line, p, n)
        r.line_len = n

    cdef void flush_notes(self) noexcept:
        cdef int i, what
        cdef fl_rejected *r
        try:
            for i in range(self.nrejected_to_log):
                r = &self.rejected_to_log[i]
                host = r.host.decode("utf-8", "surrogateescape")
                self.on_rejected(r.status, host if r.port < 0 else (host, r.port),
                                 PyUnicode_DecodeLatin1(r.line, r.line_len, NULL), r.sent)
        except BaseException:
            log.exception("fastloop: logging a rejected request failed")
        self.nrejected_to_log = 0
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
