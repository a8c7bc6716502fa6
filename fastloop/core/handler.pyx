# Handler threads: Python threads that run the application beside the event loops.
#
# Each thread waits (GIL released) on the pool, then, holding the GIL, takes jobs one after
# the other while any is queued: one wake-up and one GIL acquisition for a whole batch. For
# each job it builds the Request, routes it, runs the handler, checks the answer
# (plan_answer) and posts it to the connection's loop as messages: the head with a small or
# whole bytes body in one MSG_DATA; a file as MSG_FILE, sent by the loop with sendfile as the
# socket takes it; an iterable piece by piece, each posted as it comes, waiting (GIL released)
# while the client is more than FL_HIGH_WATER behind. The message that ends an answer carries
# MSG_F_END. See handoff.pyx for the exchange itself.
#
# Without the GIL (free-threaded CPython) handler threads run at once, so nothing they share
# may rely on it: the pool, a job and an inbox are used under their own mutexes (handoff.pyx);
# the counters below and inbox.stopping only through core/atomic.h; the content-type cache
# (answer.pyx) only with single dict operations; the route table (routes.py) is only read. A
# Responder, and the Request of the job at hand, belong to one thread.

cimport cython
import sys as _sys
import threading as _threading
from time import perf_counter_ns as _perf_ns

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, strlen
from posix.unistd cimport dup


cdef enum:
    MSG_F_END = 4       # fl_msg.flags: this message completes the answer (END_* may be set too)

# How long the oldest queued job may wait, while a handler thread runs, before another thread
# joins it (fl_pool_wait): well above a busy thread's batch of keep-alive requests (under
# 1 ms for 64 connections here), well below what a blocked handler costs the jobs behind it.
cdef int64_t FL_WATCH_NS = 2000000


cdef const char *CONN_CLOSE_LINE = b"Connection: close\r\n"
cdef const char *CONN_KEEP_ALIVE_LINE = b"Connection: keep-alive\r\n"
cdef const char *NO_LINE = b""


cdef class JobPool:
    """Where the event loops of a server queue their jobs (fl_pool), and who runs them: the
    handler threads (HandlerPool) or one asyncio loop (AsgiBridge, core/asgi_bridge.pyx)."""

    cdef fl_pool pool

    def __cinit__(self, *args, **kwargs):
        memset(&self.pool, 0, sizeof(fl_pool))
        pthread_mutex_init(&self.pool.lock, NULL)
        pthread_cond_init(&self.pool.cond, NULL)
        fl_cond_init_timed(&self.pool.watch_cond)  # fl_pool_wait's watch has a deadline
        self.pool.notify_fd = -1

    def __dealloc__(self):
        self.drop_queued()
        pthread_cond_destroy(&self.pool.cond)
        pthread_cond_destroy(&self.pool.watch_cond)
        pthread_mutex_destroy(&self.pool.lock)

    cdef void drop_queued(self) noexcept:
        """Releases the jobs nobody will run (their connections close with their loops)."""
        cdef fl_job *j
        cdef fl_job *ready
        cdef fl_job *nxt
        j = fl_pool_take_all(&self.pool, &ready)
        while j != NULL:
            nxt = j.next
            fl_job_release(j)
            j = nxt
        while ready != NULL:
            nxt = ready.ready_next
            fl_job_release(ready)
            ready = nxt

    cdef fl_pool *c_pool(self) noexcept:
        return &self.pool


cdef class HandlerPool(JobPool):
    """The handler threads of one server, shared by all its event loops."""

    cdef dict exact             # the RouteTable's (fastloop/routes.py) fast path and lookup,
    cdef object lookup          # read for every request (response.pyx, call_handler)
    cdef list threads
    cdef readonly int size
    # Added to by every handler thread, with no GIL to serialise them on a free-threaded
    # CPython: atomics (core/atomic.h), read by stats() from yet another thread.
    cdef int64_t handled
    cdef int64_t failed

    def __init__(self, routes, int threads):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.exact = routes.exact
        self.lookup = routes.lookup
        self.size = threads
        self.threads = []
        # With a GIL, one thread at a time runs: the others join only a blocked one (see
        # fl_pool_wait). Without one (free-threaded CPython) they run in parallel at once.
        gil_enabled = getattr(_sys, "_is_gil_enabled", None)
        self.pool.watch_ns = FL_WATCH_NS if gil_enabled is None or gil_enabled() else 0

    def start(self):
        for i in range(self.size):
            t = _threading.Thread(target=self._run, name=f"fastloop-handler-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    @cython.linetrace(False)  # holds a lock of handoff.pyx: see there
    @cython.profile(False)
    def stop(self, double timeout=0.1):
        """Idle threads end at once; a handler still running is left to finish on its own
        daemon thread (its answers are dropped and counted by the loop that is gone)."""
        with nogil:
            pthread_mutex_lock(&self.pool.lock)
            self.pool.stopping = 1
            pthread_cond_broadcast(&self.pool.cond)
            pthread_cond_broadcast(&self.pool.watch_cond)
            pthread_mutex_unlock(&self.pool.lock)
        for t in self.threads:
            t.join(timeout)
        self.threads = [t for t in self.threads if t.is_alive()]
        self.drop_queued()  # never taken: their connections are closed with their loops

    def stats(self):
        return {"handled": fl_atomic_load(&self.handled),
                "handler_errors": fl_atomic_load(&self.failed),
                "handlers_busy": len([t for t in self.threads if t.is_alive()])}

    def _run(self):
        cdef Responder r = Responder()
        cdef fl_job *j
        cdef int more
        cdef bint ran = False
        while True:
            with nogil:
                more = fl_pool_wait(&self.pool, ran)
            ran = True
            if not more:
                return
            while True:
                j = fl_pool_take(&self.pool)
                if j == NULL:
                    break
                try:
                    r.answer(self, j)
                except BaseException:
                    # A fault in fastloop itself, not in the handler (that is a 500 already);
                    # answer() has cut the connection.
                    fl_atomic_add(&self.failed, 1)
                    log.exception("fastloop: internal error while answering a request")
                finally:
                    fl_atomic_add(&self.handled, 1)
                    fl_job_release(j)


cdef enum:
    FL_BATCH_FLUSH = 262144     # answer bytes gathered for one connection before they are posted
    FL_COPY_MAX = 4096          # answers up to this size are copied out of the gathered buffer
    FL_SLOW_HANDLER_NS = 200000  # a handler this slow: what was gathered before it goes out now


cdef class Responder:
    """What one handler thread keeps between jobs: its Date line, and the answers of the job
    at hand gathered into one buffer, so that pipelined answers leave in one message (and one
    send) unless one of them streams or takes its time."""

    cdef char date_line[40]
    cdef int64_t date_sec
    cdef char *buf
    cdef size_t len
    cdef size_t cap
    # The body bytes of the last answer post() handled, as handed to the connection: a bytes
    # body's length, the pieces of an iterable posted before it ended or was cut, a file's
    # count given to the loop's sendfile; 0 for HEAD, 1xx, 204, 304. Chunk framing is not
    # counted. "Sent" means posted: a client that vanishes mid-body may not receive all of it.
    cdef int64_t sent
    cdef dict peers     # the clients' addresses of the connections it answered (peer_address)
    cdef int64_t direct  # bytes of the job at hand it sent itself, not yet told to the loop

    def __cinit__(self):
        self.date_sec = -1
        self.peers = {}

    def __dealloc__(self):
        free(self.buf)

    cdef const char *date(self) noexcept:
        fl_refresh_date_line(&self.date_sec, self.date_line)
        return self.date_line

    cdef char *room(self, size_t n) except NULL:
        """n bytes at the end of the gathered answers, to be filled (then self.len += n)."""
        cdef size_t cap
        cdef void *p
        if self.len + n > self.cap:
            cap = self.cap * 2 if self.cap else 16384
            while cap < self.len + n:
                cap *= 2
            p = realloc(self.buf, cap)
            if p == NULL:
                raise MemoryError()
            self.buf = <char *>p
            self.cap = cap
        return self.buf + self.len

    cdef void flush(self, fl_job *j, int flags, int answered) except *:
        """Sends what was gathered straight to the client as far as the loop lets this thread
        (fl_job_send), and posts the rest (with flags, MSG_F_END for the last message of the
        job): the loop sends it after those bytes, and counts them."""
        cdef fl_msg *m
        cdef size_t n
        if self.len:
            n = fl_job_send(j, self.buf, self.len)
            if n:
                self.direct += n
                self.len -= n
                if self.len:
                    memmove(self.buf, self.buf + n, self.len)
        if self.len == 0 and not flags:
            return
        m = fl_msg_new(0, MSG_DATA)
        if m == NULL:
            raise MemoryError()
        if self.len > FL_COPY_MAX:
            # The gathered buffer changes hands; the next answers start a new one.
            m.data = self.buf
            m.len = self.len
            self.buf = NULL
            self.len = self.cap = 0
        elif self.len:
            # Small answers are copied out, and this thread keeps its buffer: a block of
            # their own size comes from malloc's per-thread cache, where handing over the
            # gathered (16 KiB) block cost a large malloc and a cross-thread free per answer.
            m.data = <char *>malloc(self.len)
            if m.data == NULL:
                fl_msg_free(m)
                raise MemoryError()
            memcpy(m.data, self.buf, self.len)
            m.len = self.len
            self.len = 0
        m.flags = flags
        m.count = answered
        m.off = self.direct
        self.direct = 0
        fl_job_post(j, m)

    cdef void answer(self, HandlerPool pool, fl_job *j) except *:
        """Answers every request of j, in order; stops after one that closes the connection."""
        cdef Request request
        cdef Answer a
        cdef int k, flags, rc, end = 0, answered = 0
        cdef object t0
        for k in range(j.start, j.nreqs):
            flags = j.reqs[k].req_flags
            request = request_from_job(j, k)
            request._peers = self.peers
            try:
                t0 = _perf_ns() if j.nreqs > 1 else None
                result = call_handler(pool.exact, pool.lookup, request)
                try:
                    a = plan_answer(result, flags)
                except Exception:
                    # Nothing of it was posted: the client gets a clean 500 instead.
                    log.exception("fastloop: handler for %s %s returned an invalid answer",
                                  request.method, request.path)
                    close_body(getattr(result, "body", None))
                    a = plan_answer(SERVER_ERROR, flags)
                if j.stream and not fl_job_body_read(j):
                    a.close = True  # part of the body was not read: close after answering
                end = self.post(j, a, flags)
                if request.on_answered is not None:
                    answered_hook(request, a, self.sent)
            except BaseException:
                end = END_CLOSE | END_CUT
                raise
            finally:
                release_request(request)
                answered += 1
                if end or k == j.nreqs - 1:
                    self.flush(j, MSG_F_END | end, answered)
            if end:
                return
            if t0 is not None and (self.len > FL_BATCH_FLUSH or _perf_ns() - t0 > FL_SLOW_HANDLER_NS):
                self.flush(j, 0, 0)  # the next handler may be as slow: send what is ready
            if k < j.nreqs - 1 and fl_job_behind(j):
                # The client does not read its answers: the rest of the job waits in the
                # loop, which queues it again once the client caught up. No thread is held.
                j.start = k + 1
                self.flush(j, MSG_F_END | END_MORE, answered)
                return

    cdef int post(self, fl_job *j, Answer a, int flags) except -1:
        """Gathers (or, for files and iterables, posts) answer a. Returns END_* flags: END_CLOSE
        when the connection closes after it, END_CUT when it was cut."""
        # inbox.stopping is set by the loop while handler threads read it: an atomic load
        # (a plain one would be a data race without the GIL), relaxed because it orders
        # nothing: an answer racing the stop may lack "close", and its connection still closes
        # after it (the loop checks its own flag).
        cdef bint keep = ((flags & FL_REQ_KEEP_ALIVE) and not a.close
                          and not fl_atomic_load_int(&j.inbox.stopping))
        cdef const char *ch = CONN_CLOSE_LINE
        cdef int end = 0 if keep else END_CLOSE
        cdef size_t body = len(a.body) if a.kind == BODY_BYTES and a.send_body else 0
        cdef char *p
        self.sent = body
        if keep:
            ch = CONN_KEEP_ALIVE_LINE if flags & FL_REQ_HTTP10 else NO_LINE
        p = self.room(head_size(a, ch) + body)
        p = write_head(p, a, self.date(), ch)
        if body:
            memcpy(p, PyBytes_AS_STRING(a.body), body)
            p += body
        self.len = p - self.buf
        if a.kind == BODY_BYTES:
            return end
        if not a.send_body:
            close_body(a.body)
            return end
        self.flush(j, 0, 0)  # the head, and the answers before it
        if a.kind == BODY_FILE:
            self.sent = min(a.file_len, <int64_t>a.length)  # what post_file gives the loop
            return end | post_file(j, a)
        return end | post_pieces(self, j, a)


cdef void answered_hook(Request request, Answer a, int64_t sent) noexcept:
    """Calls request.on_answered(request, status, sent); a failing hook is logged, and the
    answer goes on as if it had not been called."""
    try:
        request.on_answered(request, int(a.status_line[9:12]), sent)
    except BaseException:
        log.exception("fastloop: the on_answered hook of %s %s raised", request.method,
                      request.path)


cdef size_t head_size(Answer a, const char *conn_line):
    """The most bytes write_head() writes for a."""
    return (len(a.status_line) + len(SERVER) + FL_DATE_LINE_LEN + 16 + len(a.ctype) + 2 + 40
            + 28 + len(a.fields) + strlen(conn_line) + 2)


cdef char *write_head(char *p, Answer a, const char *date_line, const char *conn_line):
    """Writes a's head at p (head_size() bytes of room); returns the end."""
    cdef size_t chlen = strlen(conn_line)
    p = put(p, a.status_line)
    if not a.own_server:
        p = put(p, SERVER)
    if not a.own_date:
        memcpy(p, date_line, FL_DATE_LINE_LEN)
        p += FL_DATE_LINE_LEN
    if a.ctype:
        memcpy(p, b"Content-Type: ", 14)
        p = put(p + 14, a.ctype)
        memcpy(p, b"\r\n", 2)
        p += 2
    if a.length is not None:
        memcpy(p, b"Content-Length: ", 16)
        p = put_decimal(p + 16, <uint64_t>a.length)
        memcpy(p, b"\r\n", 2)
        p += 2
    elif a.chunked:
        memcpy(p, b"Transfer-Encoding: chunked\r\n", 28)
        p += 28
    p = put(p, a.fields)
    memcpy(p, conn_line, chlen)
    p += chlen
    memcpy(p, b"\r\n", 2)
    return p + 2


cdef inline char *put(char *p, bytes b):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(p, PyBytes_AS_STRING(b), n)
    return p + n


cdef char *put_decimal(char *p, uint64_t n) noexcept:
    cdef char digits[24]
    cdef int i = 24
    while True:
        i -= 1
        digits[i] = <char>(48 + n % 10)
        n //= 10
        if n == 0:
            break
    memcpy(p, digits + i, 24 - i)
    return p + 24 - i


cdef void close_body(object body):
    close = getattr(body, "close", None)
    if close is not None:
        close()


cdef int post_file(fl_job *j, Answer a) except -1:
    """The file goes out from the loop, with sendfile, as the socket takes it. A file shorter
    than the announced length cuts the connection once its end is sent (returns END_* flags)."""
    cdef int64_t count = min(a.file_len, <int64_t>a.length)
    cdef fl_msg *m
    cdef int fd
    try:
        fd = dup(a.body.fileno())
        if fd < 0:
            raise OSError("dup of the file to send failed")
        m = fl_msg_new(0, MSG_FILE)
        if m == NULL:
            close(fd)
            raise MemoryError()
        m.fd = fd
        m.off = a.file_off
        m.count = count
        fl_job_post(j, m)
        if count < a.length:
            log.error("fastloop: sending a file: %d bytes, shorter than its content_length %d",
                      count, a.length)
            return END_CLOSE | END_CUT
        return 0
    finally:
        close_body(a.body)


cdef int post_pieces(Responder r, fl_job *j, Answer a) except -1:
    """Streams an iterable body: each piece is posted as it comes (the loop sends it at once),
    and the producer waits while the client is FL_HIGH_WATER behind. Returns END_* flags."""
    cdef uint64_t total = 0
    cdef Py_ssize_t n
    cdef bytes piece
    cdef int rc
    cdef object length = a.length
    try:
        for item in a.body:
            piece = piece_bytes(item)
            n = PyBytes_GET_SIZE(piece)
            if n == 0:
                continue
            total += n
            if length is not None and total > length:
                log.error("fastloop: an iterable body: longer than its content_length")
                return END_CLOSE | END_CUT
            if post_bytes(j, piece, a.chunked) < 0:
                return END_CLOSE | END_CUT  # the connection is gone
            r.sent += n
            with nogil:
                rc = fl_job_wait_room(j)
            if rc < 0:
                return END_CLOSE | END_CUT
        if length is not None and total != length:
            log.error("fastloop: an iterable body: shorter than its content_length")
            return END_CLOSE | END_CUT
        if a.chunked:
            memcpy(r.room(5), b"0\r\n\r\n", 5)
            r.len += 5
        return 0
    except Exception:
        log.exception("fastloop: the body iterable of an answer raised")
        return END_CLOSE | END_CUT
    finally:
        close_body(a.body)


cdef int post_bytes(fl_job *j, bytes piece, bint chunked) except -2:
    """One body piece, chunk-framed if chunked, posted to the connection: 0, or -1 when the
    connection or its loop is gone (fl_job_post)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(piece)
    cdef fl_msg *m = fl_msg_new(0, MSG_DATA)
    cdef char *p
    if m == NULL:
        raise MemoryError()
    m.data = <char *>malloc(n + 24)
    if m.data == NULL:
        fl_msg_free(m)
        raise MemoryError()
    p = m.data
    if chunked:
        p += fmt_hex(p, n)
    memcpy(p, PyBytes_AS_STRING(piece), n)
    p += n
    if chunked:
        memcpy(p, b"\r\n", 2)
        p += 2
    m.len = p - m.data
    return fl_job_post(j, m)


cdef int fmt_hex(char *out, uint64_t n) noexcept:
    """Writes n in hex and CRLF at out; returns the length."""
    cdef char digits[20]
    cdef int i = 20, k
    while True:
        i -= 1
        digits[i] = b"0123456789abcdef"[n & 15]
        n >>= 4
        if n == 0:
            break
    k = 20 - i
    memcpy(out, digits + i, k)
    memcpy(out + k, b"\r\n", 2)
    return k + 2
