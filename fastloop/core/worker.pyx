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
#
# This file keeps the loop turn, accepting and adopting connections, and reading and parsing
# requests. The Worker's other jobs have files of their own: a connection's output and buffers
# (conn_io.pyx), the hand-off to the handler threads and back (jobs.pyx), settling, closing,
# timeouts and the graceful stop (closing.pyx), the state transitions (conn_state.pyx), what it
# logs (notes.pyx), building and freeing it with its route tables (worker_setup.pyx), and the
# structures they use: the timer lists (timers.pyx) and the buffer pool (bufpool.pyx).

cimport cython
from libc.errno cimport ENOMEM
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove, memset


cdef enum:
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

# conn_process results
cdef enum:
    FL_PROC_MORE = 0              # every complete request was answered: read more
    FL_PROC_PY = 1                # a request waits for the Python phase
    FL_PROC_STOP = 2              # parse nothing more for now (closing, paused or closed)


cdef inline uint64_t fl_token(fl_conn *c) noexcept nogil:
    return (<uint64_t>c.gen << 32) | c.slot


cdef class Worker(Loop):
    """An event loop that owns connections. Built by Server; run() blocks its thread."""

    def __cinit__(self, *args, **kwargs):
        self.inbox = fl_inbox_new(&self.poller)
        if self.inbox == NULL:
            raise MemoryError()
        self.now_ms = fl_now_ms()
        self.date_sec = -1
        self.refresh_date()

    def __init__(self, int index, routes, JobPool handlers, *, bint is_tcp=True,
                 dict limits=None, dict timeouts=None, ConnLimit conn_limit=None,
                 JobPool ws_pool=None):
        setup_worker(self, index, routes, handlers, is_tcp, limits, timeouts, conn_limit, ws_pool)

    @cython.linetrace(False)  # holds a lock of handoff.pyx: see there
    @cython.profile(False)
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
        free_worker(self)

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
                    begin_stop(self)
                    stop_begun = True
                    fresh_deadline = self.now_ms + FL_FRESH_GRACE_MS
                elif not fresh_closed and self.now_ms >= fresh_deadline:
                    self.stop_phase = FL_STOP_GRACE_OVER
                    close_idle(self, True)
                    fresh_closed = True
                if self.counters.open == 0 or self.now_ms >= self.stop_deadline:
                    break  # (the last turn's notes are logged below, not lost with the loop)
            next_deadline = fl_timers_next_deadline(&self.timers)
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
                    flush_notes(self)
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
                        conn_settle(self, c)
                free(res)
            for i in range(n):
                tok = events[i].token
                if tok == FL_LISTENER_TOKEN:
                    self.accept_all()
                elif tok == FL_WAKER_TOKEN:
                    fl_poller_wake_drain(&self.poller)
                    take_inbox(self)
                else:
                    c = self.conn_for(tok)
                    if c != NULL:  # NULL: closed earlier in this batch, maybe its slot reused
                        self.conn_event(c, events[i].mask)
            # Expire as of the wait: a connection whose request arrived while a handler held
            # this thread has its event in the next wait, and is served, not timed out.
            timers_expire(self, wait_now)
            if self.njobs:
                # Every request of this turn that needs Python (timers' flushes included), to
                # the handler threads at once.
                fl_pool_push(self.handlers, self.jobs_first, self.jobs_last, self.njobs)
                self.jobs_first = self.jobs_last = NULL
                self.njobs = 0
            if FASTLOOP_DEBUG:
                worker_check(self)  # ... and the whole table's, after every turn
        end_loop(self)
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

    cdef void adopt(self, int fd) noexcept nogil:
        """Registers an accepted descriptor, already counted as accepted and open."""
        cdef fl_conn *c
        cdef uint32_t slot, newcap
        cdef void *p
        if self.open_total != NULL and fl_atomic_add(self.open_total, 1) > self.max_open:
            fl_atomic_add(self.open_total, -1)
            refuse(self, fd)
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
                    drop_fd(self, fd)
                    return
                self.slots = <fl_conn **>p
                p = realloc(self.free_slots, newcap * sizeof(uint32_t))
                if p == NULL:
                    drop_fd(self, fd)
                    return
                self.free_slots = <uint32_t *>p
                self.cap_slots = newcap
            c = <fl_conn *>malloc(sizeof(fl_conn))
            if c == NULL:
                drop_fd(self, fd)
                return
            memset(c, 0, sizeof(fl_conn))
            c.slot = self.nslots
            c.gen = 1
            self.slots[self.nslots] = c
            self.nslots += 1
        c.fd = fd
        conn_to_new(c)
        c.rb.start = c.rb.end = c.scanned = 0
        c.wb.start = c.wb.end = 0
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
            conn_close(self, c)
            return
        # The first request must arrive in time too.
        fl_timer_set(&self.timers, c, FL_TIMER_HEADER, self.now_ms)

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
                conn_close(self, c)
                return
            arr[0] = <uint64_t *>p
            cap[0] = cap[0] * 2 + 16
        arr[0][n[0]] = fl_token(c)
        n[0] += 1

    # ---- one connection -------------------------------------------------------------------

    cdef void conn_event(self, fl_conn *c, int mask) noexcept nogil:
        if (mask & FL_WRITABLE) and fl_has_output(c):
            if conn_flush(self, c) < 0:
                return
        if mask & FL_READABLE:
            self.conn_read(c, mask)
        if c.fd >= 0:
            conn_settle(self, c)
        if FASTLOOP_DEBUG:
            conn_check(self, c)  # conn.pxd's invariants, after every event (conn_check.pyx)

    cdef void conn_read(self, fl_conn *c, int mask) noexcept nogil:
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
            conn_linger_read(self, c)
            return
        if c.state == CONN_WEBSOCKET:
            conn_ws_read(self, c, mask)
            return
        if conn_in_handler(c):
            if c.state == CONN_STREAMING and c.body_left and not (c.flags & (CONN_F_BODY_FULL | CONN_F_PEER_EOF)):
                conn_read_body(self, c)  # a streaming route's handler takes the body as it comes
                return
            if (mask & FL_HUP) and c.job != NULL:
                fl_job_peer_eof(c.job)  # an ASGI app learns of it (http.disconnect)
            c.flags |= CONN_F_READ_MORE  # an edge goes unread now: read once it is answered
            return
        if c.flags & (CONN_F_PAUSED | CONN_F_CLOSE_AFTER | CONN_F_PEER_EOF):
            return
        c.flags &= ~CONN_F_READ_MORE
        if c.rb.start < c.rb.end:
            # Requests may wait in the buffer (reading paused, or stopped for the Python
            # phase): answer them before reading more, as no new edge will announce them.
            rc = self.conn_process(c)
            if rc == FL_PROC_PY:
                if c.state == CONN_STREAMING and c.body_left and not (c.flags & CONN_F_BODY_FULL):
                    conn_read_body(self, c)
                    return
                c.flags |= CONN_F_READ_MORE  # the socket was not read yet
                return
            if rc == FL_PROC_STOP or c.fd < 0:
                return
        while True:
            n = conn_recv(self, c, &space)
            if n > 0:
                rc = self.conn_process(c)
                if rc == FL_PROC_PY:
                    if c.state == CONN_STREAMING:
                        if c.body_left and not (c.flags & CONN_F_BODY_FULL):
                            conn_read_body(self, c)  # the body goes on to its handler
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
                if conn_read_budget_spent(self, c, &budget, n):
                    return
            elif n == 0:
                # The client sent all it will. Pending answers still go out (half-close), then
                # the connection closes; a partial request can never complete.
                c.flags |= CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER
                return
            else:
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
        cdef fl_span ws_key
        while True:
            if c.flags & CONN_F_CLOSE_AFTER:
                return conn_end_process(self, c, FL_PROC_STOP)
            if self.nstage == FL_STAGE_MAX:
                return conn_end_process(self, c, FL_PROC_MORE)
            if c.wb.end - c.wb.start > FL_HIGH_WATER:
                # Backpressure: the client is not reading its answers, so stop reading its
                # requests; TCP flow control then slows it down. Memory stays bounded.
                c.flags |= CONN_F_PAUSED
                return conn_end_process(self, c, FL_PROC_STOP)
            p = c.rb.p + c.rb.start
            avail = c.rb.end - c.rb.start
            if c.state == CONN_READ_HEAD:
                # RFC 9112 2.2: ignore empty lines received before a request-line.
                while avail >= 2 and p[0] == c'\r' and p[1] == c'\n':
                    c.rb.start += 2
                    p += 2
                    avail -= 2
                if avail == 0:
                    # (Staged bytes stay where they are until conn_end_process copies them.)
                    c.rb.start = c.rb.end = c.scanned = 0
                    return conn_end_process(self, c, FL_PROC_MORE)
                end = fl_frame_head(p, avail, &c.scanned, &self.req, &self.limits)
                if end == 0:
                    return conn_end_process(self, c, FL_PROC_MORE)
                if end < 0:
                    if self.nstage:
                        # Answer what came before first; this head is parsed (and rejected)
                        # again once those answers are out.
                        c.scanned = 0
                        return conn_end_process(self, c, FL_PROC_MORE)
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
                if (self.req.flags & FL_REQ_UPGRADE) and self.websockets and c.route < 0 and \
                        (self.nws_paths == 0 or fl_match_path(self.ws_paths, self.nws_paths, p, self.req.path) >= 0):
                    rc = fl_ws_check_upgrade(p, &self.req, &ws_key)
                    if rc != 1 and (cl or (self.req.flags & FL_REQ_CHUNKED)):
                        rc = -400  # an upgrade has no body: bytes after its head are frames
                    if rc != 1:
                        if self.nstage:
                            c.scanned = 0  # after the staged answers, from its head again
                            return conn_end_process(self, c, FL_PROC_MORE)
                        if rc < 0:
                            self.conn_reject(c, -rc)  # 400, or 426 naming version 13
                            return FL_PROC_STOP
                        return FL_PROC_PY if conn_ws_upgrade(self, c) == 0 else FL_PROC_STOP
                if c.route < 0 and ((self.stream_bodies and (cl or (self.req.flags & FL_REQ_CHUNKED)))
                                    or fl_match_path(self.streams, self.nstreams, p, self.req.path) >= 0):
                    if self.nstage:
                        c.scanned = 0  # after the staged answers, from its head again
                        return conn_end_process(self, c, FL_PROC_MORE)
                    # A streaming route: its handler runs now and reads the body as it arrives
                    # (Request.stream), instead of after all of it is buffered.
                    return FL_PROC_PY if conn_start_job(self, c) == 0 else FL_PROC_STOP
                conn_to_read_body(c)
            # CONN_READ_BODY: wait until the whole body is buffered (and decoded, if chunked)
            if c.req_flags & FL_REQ_CHUNKED:
                rc = fl_decode_chunked(p, avail, &c.chunked, self.buffered_chunked_max)
                if rc < 0:
                    if self.nstage:
                        # Its framing may be half decoded already: cut the connection after
                        # the staged answers (no answer of this request could be right).
                        c.flags |= CONN_F_CLOSE_AFTER
                        return conn_end_process(self, c, FL_PROC_STOP)
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
                    c.rb.end -= c.chunked.in_ - c.chunked.out
                    c.chunked.in_ = c.chunked.out
            else:
                complete = avail >= c.req_len
                if not complete and self.nstage:
                    # Growing the buffer would move the staged requests: hand them over first.
                    return conn_end_process(self, c, FL_PROC_MORE)
                if not complete:
                    if c.req_len > FL_RBUF_MAX:
                        # Buffered, it would not fit one read buffer (so it never completes
                        # and always comes here): 413. This keeps rpos + req_len (consume)
                        # within 32 bits.
                        self.conn_reject(c, 413)
                        return FL_PROC_STOP
                    if rbuf_ensure(self, c, c.req_len - avail) < 0:
                        self.count_errno(self.counters.io_errors, ENOMEM)
                        conn_close(self, c)
                        return FL_PROC_STOP
            if not complete:
                if self.nstage:
                    return conn_end_process(self, c, FL_PROC_MORE)
                if (c.req_flags & FL_REQ_EXPECT_CONTINUE) and not (c.req_flags & FL_REQ_HTTP10) \
                        and not (c.flags & CONN_F_CONTINUE_SENT):
                    if c.route >= 0:
                        # A static answer ignores the body: answer now instead of asking for it
                        # (RFC 9110 10.1.1), then close, since the body may still come.
                        if conn_put_static(self, c, &self.statics[c.route], c.req_flags & ~FL_REQ_KEEP_ALIVE) == 0:
                            self.counters.requests += 1
                            c.rb.start = c.rb.end = 0
                            c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
                        return FL_PROC_STOP
                    c.flags |= CONN_F_CONTINUE_SENT
                    if conn_put(self, c, CONTINUE_100, 25) < 0:
                        return FL_PROC_STOP
                return FL_PROC_MORE
            if c.route < 0 or self.nstage:
                # Python's, or behind a request that is: answered by the route's Python twin
                # (App.static registers one), so that answers stay in request order.
                conn_stage(self, c)
                continue
            if conn_put_static(self, c, &self.statics[c.route], c.req_flags) < 0:
                return FL_PROC_STOP
            self.consume(c)

    cdef void consume(self, fl_conn *c) noexcept nogil:
        """The current request is answered: move on to the next one."""
        self.counters.requests += 1
        self.conn_past_request(c)
        if c.rb.start == c.rb.end:
            c.rb.start = c.rb.end = 0

    cdef void conn_past_request(self, fl_conn *c) noexcept nogil:
        """Moves c's parsing past its current request (answered, or staged for a job)."""
        # req_len <= FL_RBUF_MAX here (conn_process rejects more; a streaming request's is 0)
        c.rb.start += <uint32_t>c.req_len
        c.scanned = 0
        # stop_phase, not stopping: the answer said close only if the stop had begun when it
        # was made (conn_header, and the handlers' inbox.stopping, set with it).
        conn_to_next_request(c, not (c.req_flags & FL_REQ_KEEP_ALIVE) or self.stop_phase != FL_STOP_NONE)

    cdef void conn_reject(self, fl_conn *c, int status) noexcept nogil:
        """Answers a request that cannot be served with status, counted, then closes. Nothing
        after it on this connection is ever parsed as a request (no smuggling past an error)."""
        self.counters.parse_errors += 1
        self.counters.rejected[fl_status_index(status)] += 1
        note(self, status)
        note_rejected(self, c, status)
        self.conn_put_error(c, status)

    cdef void conn_put_error(self, fl_conn *c, int status) noexcept nogil:
        cdef fl_static *s = &fl_error_responses[fl_status_index(status)]
        c.rb.start = c.rb.end = c.scanned = 0
        conn_to_rejected(c)
        if conn_reserve(self, c, fl_error_len(s)) < 0:
            return
        c.wb.end += fl_put_error(c.wb.p + c.wb.end, s, self.date_line)

    # ---- the Date line ----------------------------------------------------------------------

    cdef void refresh_date(self) noexcept nogil:
        fl_refresh_date_line(&self.date_sec, self.date_line)
