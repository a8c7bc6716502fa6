# ASGI 3 applications beside the loop, part 2c: one job's HTTP requests, answered by the
# application on the asyncio loop that the bridge (asgi_bridge.pyx) feeds.
#
# receive() and send() never block the asyncio loop: when a body has not arrived yet, or the
# client is more than FL_HIGH_WATER behind, they set the job's wait flag under its lock and
# await a future that the bridge resolves when the job is woken; they look again after each
# wake-up, so a wake-up that finds no waiter is never lost. All AsgiCall state is touched only
# by the asyncio thread (the bridge's callback and the tasks), never by an event loop.
#
# Framing is the server's, as for every other interface: the application's Content-Length is
# checked against what it sends; a body of unknown length is chunked (HTTP/1.1) or ends with
# the connection (HTTP/1.0); a failure before http.response.start is a clean 500, after it the
# connection is cut, never a half-framed answer on a keep-alive connection.

cimport cython
import os as _os
from types import CoroutineType as _CoroutineType
from urllib.parse import unquote as _unquote

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free
from libc.string cimport memchr, memcmp, memcpy


cdef extern from "Python.h":
    long PyLong_AsLongAndOverflow(object, int *) except? -1


cdef class AsgiCall:
    """One job's requests, answered by the application in order, on the asyncio loop."""

    cdef fl_job *j              # the handler's reference, until run() ends
    cdef AsgiBridge bridge
    cdef object task            # the task driving the call, once it has waited
    cdef Responder out          # answers gathered for one message, and the Date line
    cdef object recv_waiter     # futures resolved by wake()
    cdef object send_waiter
    cdef int k                  # the request being answered
    cdef int req_flags
    # the current request's answer
    cdef int phase
    cdef Answer a
    cdef bint want_trailers
    cdef bytes trailer_fields   # http.response.trailers gathered so far
    cdef uint64_t body_sent     # body bytes posted (chunk framing not counted)
    cdef int end                # END_* flags for the connection after this answer
    # the current request's body
    cdef bint body_done         # everything was given to the application (or it failed)
    cdef bint continue_asked
    cdef int body_error         # 400/408/413 when the core refused the body, else 0
    cdef bint saw_disconnect
    cdef int answered           # answers of this job run, counted in its MSG_END
    cdef bint ended             # the job's last message (MSG_F_END) is posted
    cdef bint flush_due         # flush_gathered() is scheduled on the asyncio loop
    cdef tuple addresses        # (client, server) of the job's connection, once asked
    cdef object receive_m       # self.receive and self.send, bound once per job
    cdef object send_m

    cdef void adopt(self, AsgiBridge bridge, fl_job *j) noexcept:
        self.bridge = bridge
        self.j = j
        j.owner = <void *>self  # cleared in run() before the reference is dropped
        self.out = bridge.spare.pop() if bridge.spare else Responder.__new__(Responder)

    def __dealloc__(self):
        if self.j != NULL:  # a task that never ran (its loop stopped first)
            self.j.owner = NULL
            fl_job_release(self.j)
            self.j = NULL

    cdef void wake(self) noexcept:
        """The bridge's side: the job changed (room, body, gone): waiters look again."""
        for fut in (self.recv_waiter, self.send_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)

    # A job's requests are answered in order by the application, each call driven by the
    # job's _CallTask (asgi_task.pyx): call_app() begins one, request_ended() ends it. An
    # answer goes to the connection as soon as it is complete, not when the application
    # returns (it may go on with background work): then the connection's next request is
    # parsed at once, as other ASGI servers do.

    cdef object call_app(self, int k):
        """Begins request k: returns the application's awaitable for it, as an iterator."""
        self.begin(k)
        if self.receive_m is None:  # bound once for the job's requests (a pipelined batch)
            self.receive_m = self.receive
            self.send_m = self.send
        aw = self.bridge.app(self.scope(), self.receive_m, self.send_m)
        if type(aw) is _CoroutineType:
            return aw
        return aw if hasattr(aw, "send") else aw.__await__()

    cdef bint request_ended(self, exc) except -1:
        """The application's call for the current request returned (exc is None) or raised
        exc. Returns True when the job is over (given back to its loop), False when its next
        request is to be called. A cancellation or an exit goes on up, after the cleanup."""
        cdef fl_job *j = self.j
        try:
            try:
                if exc is None:
                    # (An app told http.disconnect may end without an answer: no error.)
                    if self.phase != PH_DONE and not self.saw_disconnect:
                        self.bridge.app_errors += 1
                        log.error("fastloop: %s returned without completing its answer to %s",
                                  self.bridge.app_name, self.request_name())
                else:
                    self.app_failed(exc)
            finally:
                self.finish()
                self.bridge.handled += 1
            if exc is not None and not isinstance(exc, Exception):
                raise exc
            if self.ended or self.k + 1 >= j.nreqs:
                self.give_back()
                return True
            if fl_job_behind(j):
                # The client does not read: the rest waits in the loop (END_MORE).
                j.start = self.k + 1
                self.ended = True
                self.out.flush(j, MSG_F_END | END_MORE, self.answered)
                self.give_back()
                return True
            return False
        except BaseException:
            if self.j != NULL:
                self.give_back()
            raise

    cdef void give_back(self) noexcept:
        """The call is over: the job goes back to its loop (the handler's reference), the task
        leaves the running set, the Responder goes back to the spares if empty."""
        cdef fl_job *j = self.j
        j.owner = NULL
        self.j = NULL
        fl_job_release(j)
        if self.task is not None:
            self.bridge.running.discard(self.task)
            self.task = None
        if self.out is not None and self.out.len == 0 and len(self.bridge.spare) < 64:
            self.bridge.spare.append(self.out)
        self.out = None
        # The bound methods refer to self: dropped, so that no cycle is left for the
        # collector (the application may still hold them; they then keep the call alive).
        self.receive_m = self.send_m = None

    cdef str request_name(self):
        cdef fl_jobreq *q = &self.j.reqs[self.k]
        cdef const char *p = self.j.req + q.off
        return (decode_span(p, q.line.method) + " " + decode_span(p, q.line.path))

    cdef void begin(self, int k):
        self.k = k
        self.req_flags = self.j.reqs[k].req_flags
        self.phase = PH_NONE
        self.a = None
        self.want_trailers = False
        self.trailer_fields = b""
        self.body_sent = 0
        self.end = 0
        self.body_done = False
        self.continue_asked = False
        self.body_error = 0
        self.saw_disconnect = False

    cdef dict scope(self):
        """The http scope of the current request (asgiref's HTTP connection scope)."""
        cdef fl_job *j = self.j
        cdef fl_jobreq *q = &j.reqs[self.k]
        cdef fl_request_line *line = &q.line
        cdef const char *p = j.req + q.off
        cdef AsgiBridge b = self.bridge
        cdef tuple addresses = self.addresses
        cdef dict scope
        if addresses is None:  # once per job: its requests share the connection
            addresses = self.addresses = b.connection_addresses(j)
        # A copy of the bridge's template, whose values are those of "GET / HTTP/1.1": a
        # dict copied whole (one memcpy of its table) and then changed in place costs about
        # half as much as one built key by key. Every value that differs is set below; the
        # values left shared are immutable, but for asgi and extensions, which are the same
        # dicts for every request as they were before.
        scope = b.scope_template.copy()
        if line.path.len and not (line.path.len == 1 and p[line.path.off] == b"/"):
            raw_path = PyBytes_FromStringAndSize(p + line.path.off, line.path.len)
            path = decode_span(p, line.path)
            if memchr(p + line.path.off, b"%", line.path.len) != NULL:
                path = _unquote(path)
            scope["path"] = path
            scope["raw_path"] = raw_path
        else:
            path = "/"
            raw_path = b"/"
        if b.scope_root_path and not path.startswith(b.scope_root_path):
            # Behind a proxy that took the prefix off: path holds root_path (asgiref #229,
            # as uvicorn and Starlette read it).
            scope["path"] = b.scope_root_path + path
            scope["raw_path"] = b.scope_root_path.encode("utf-8") + raw_path
        if not line.minor:
            scope["http_version"] = "1.0"
        if not (q.req_flags & FL_REQ_GET):
            scope["method"] = decode_span(p, line.method)
        if line.query.len:
            scope["query_string"] = PyBytes_FromStringAndSize(p + line.query.off, line.query.len)
        scope["headers"] = head_fields(p, q.head_len)
        scope["client"] = addresses[0]
        scope["server"] = addresses[1]
        scope["state"] = b.scope_state.copy()  # each request its own copy (lifespan spec)
        return scope

    # ---- receive ----------------------------------------------------------------------------

    async def receive(self):
        """The next http.request message, or http.disconnect (asgiref's HTTP spec)."""
        cdef fl_job *j = self.j
        cdef fl_jobreq *q
        cdef bytes body
        if j == NULL or self.body_done:
            return await self.wait_disconnect()
        if not j.stream:
            self.body_done = True
            q = &j.reqs[self.k]
            body = (PyBytes_FromStringAndSize(j.req + q.off + q.head_len, <Py_ssize_t>q.body_len)
                    if q.body_len else b"")
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.continue_asked:
            self.continue_asked = True
            if (self.req_flags & FL_REQ_EXPECT_CONTINUE) and not (self.req_flags & FL_REQ_HTTP10):
                fl_job_post(j, fl_msg_new(0, MSG_CONTINUE))  # the application wants the body
        while True:
            message = self.take_body()
            if message is not None:
                return message
            await self.wait("recv")

    cdef object take_body(self):
        """An http.request message with the body bytes that arrived, DISCONNECT when the body
        can never complete, or None (the job's wait_body flag set: a wake-up will come)."""
        cdef char *data
        cdef size_t n = 0
        cdef int end = 0, gone = 0
        with nogil:
            data = fl_job_take_body(self.j, &n, &end, &gone)  # all of it: it changes hands
        if n:
            try:
                body = PyBytes_FromStringAndSize(data, n)
            finally:
                free(data)
            if end == 1:
                self.body_done = True
            return {"type": "http.request", "body": body, "more_body": end != 1}
        if end == 1:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if end < 0 or gone:
            # Reset (-1), or refused by the core (-400, -408, -413): the body never completes.
            self.body_done = True
            if end < -1:
                self.body_error = -end
            self.saw_disconnect = True
            self.bridge.disconnects += 1
            return DISCONNECT
        return None

    async def wait_disconnect(self):
        """After the body: http.disconnect once the answer is complete or the client left."""
        cdef fl_job *j = self.j
        while True:
            if j == NULL or self.phase == PH_DONE or self.peer_left():
                if self.phase != PH_DONE and not self.saw_disconnect:
                    self.saw_disconnect = True
                    self.bridge.disconnects += 1
                return DISCONNECT
            await self.wait("recv")

    @cython.linetrace(False)  # holds a lock of handoff.pyx: see there
    @cython.profile(False)
    cdef bint peer_left(self):
        cdef fl_job *j = self.j
        cdef bint left
        with nogil:
            pthread_mutex_lock(&j.lock)
            left = j.gone or j.peer_eof
            pthread_mutex_unlock(&j.lock)
        return left

    async def wait(self, str which):
        fut = self.bridge.loop.create_future()
        if which == "recv":
            self.recv_waiter = fut
        else:
            self.send_waiter = fut
        try:
            await fut
        finally:
            if which == "recv":
                self.recv_waiter = None
            else:
                self.send_waiter = None

    # ---- send -------------------------------------------------------------------------------

    def send(self, message):
        """http.response.start / .body / .pathsend / .trailers (asgiref's HTTP spec). Returns
        an awaitable: one already done (SENT), unless the client is behind. Not a coroutine
        function, as granian's is not: a message is checked and posted when send() is called,
        and awaiting it only waits for room. An invalid message raises at once."""
        cdef fl_job *j = self.j
        cdef dict m
        if j == NULL:
            raise ClientDisconnected("the request is over: its answer cannot be sent")
        if self.body_error:
            # The core refused the body (receive() said http.disconnect): the client gets
            # the core's 400/408/413 from finish(), never an answer that hides it.
            raise ClientDisconnected(f"the request body was refused ({self.body_error}); "
                                     "the server answers it")
        m = message if type(message) is dict else None
        # (Typed: m.get() is a lookup, where message.get() would make a bound method first.)
        kind = m.get("type") if m is not None else None
        if kind is None:
            self.invalid(f"an ASGI message is a dict with a type, not {message!r}")
        if self.phase == PH_NONE:
            if kind != "http.response.start":
                self.invalid(f"expected http.response.start, got {kind!r}")
            self.start(m)
            return SENT
        if self.phase == PH_DONE:
            self.invalid(f"{kind!r} sent after the answer was complete")
        if self.saw_disconnect or job_gone(j):
            # (After receive() said http.disconnect, even if the socket is not closed yet.)
            raise ClientDisconnected("the client has closed the connection")
        if kind == "http.response.body":
            if self.phase != PH_STARTED and self.phase != PH_BODY:
                self.invalid(f"{kind!r} where trailers were expected")
            body = m.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    self.invalid(f"a body is bytes, not {type(body).__name__}")
                body = bytes(body)
            if self.body(body, bool(m.get("more_body", False))):
                return self.wait_room()
        elif kind == "http.response.pathsend" and self.phase == PH_STARTED:
            self.pathsend(m)
        elif kind == "http.response.trailers" and self.phase == PH_TRAILERS:
            self.trailers(m)
        else:
            self.invalid(f"unexpected message {kind!r}")
        return SENT

    cdef void invalid(self, str why) except *:
        """Counts and logs an invalid message once, then raises it into the application."""
        self.bridge.invalid += 1
        log.error("fastloop: invalid ASGI message from %s answering %s: %s",
                  self.bridge.app_name, self.request_name(), why)
        raise InvalidMessage(f"fastloop: invalid ASGI message from {self.bridge.app_name}: {why}")

    cdef void start(self, dict message) except *:
        """Checks http.response.start; nothing is written before the first body message."""
        cdef Answer a = Answer.__new__(Answer)
        cdef long code = 0
        cdef int overflow = 0
        status = message.get("status")
        if type(status) is int:
            code = PyLong_AsLongAndOverflow(status, &overflow)  # (overflow: code is -1)
        if code < 200 or code > 999:
            self.invalid(f"invalid status {status!r}")
        a.status_line = STATUS_LINES.get(status) or status_line(code)
        a.ctype = b""
        try:
            asgi_fields(a, message.get("headers", ()))
        except (TypeError, ValueError) as exc:
            self.invalid(str(exc))
        a.send_body = not ((self.req_flags & FL_REQ_HEAD) or code == 204 or code == 304)
        self.want_trailers = bool(message.get("trailers", False))
        self.a = a
        self.phase = PH_STARTED

    cdef bint body(self, bytes body, bint more) except -1:
        """Posts a body message (with the head before the first). Returns True when the
        client is behind and send() must wait for room."""
        cdef Answer a = self.a
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        cdef char *p
        if self.phase == PH_STARTED:
            if not more and not self.want_trailers:
                self.whole(body)
                return False
            if a.send_body and a.length is None:
                if self.req_flags & FL_REQ_HTTP10:
                    a.close = True  # no chunked coding in 1.0: the close ends the body
                else:
                    a.chunked = True
            self.head(0)
            self.out.flush(self.j, 0, 0)
            self.phase = PH_BODY
        if a.send_body and n:
            self.body_sent += n
            if a.length is not None and self.body_sent > <uint64_t>a.length:
                self.cut("a body longer than its Content-Length")
            post_bytes(self.j, body, a.chunked)
        if not more:
            if a.length is not None and a.send_body and self.body_sent != <uint64_t>a.length:
                self.cut("a body shorter than its Content-Length")
            if self.want_trailers:
                self.phase = PH_TRAILERS
                return False
            if a.chunked:
                memcpy(self.out.room(5), b"0\r\n\r\n", 5)
                self.out.len += 5
            self.complete()
            return False
        return fl_job_behind(self.j)

    cdef void whole(self, bytes body) except *:
        """The whole answer in one message: gathered with the job's other answers."""
        cdef Answer a = self.a
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        cdef char *p
        if a.length is None:
            if memcmp(PyBytes_AS_STRING(a.status_line) + 9, b"304", 3) != 0:
                a.length = n
        elif a.send_body and a.length != n:
            self.bridge.invalid += 1
            log.error("fastloop: %s sent a body of %d bytes but a Content-Length of %d for %s",
                      self.bridge.app_name, n, a.length, self.request_name())
            self.a = plan_answer(SERVER_ERROR, self.req_flags)
            a = self.a
            body = a.body
            n = len(body)
        if not a.send_body:
            n = 0
        self.body_sent = n
        if self.j.stream and not fl_job_body_read(self.j):
            a.close = True  # the body is not all read: say so, as the connection ends after
        p = self.head(n)
        if n:
            memcpy(p, PyBytes_AS_STRING(body), n)
            self.out.len += n
        self.complete()

    cdef char *head(self, size_t extra) except NULL:
        """Writes the head into the gathered buffer with room for extra bytes after it;
        returns where they go (self.out.len counts the head only)."""
        cdef Answer a = self.a
        cdef fl_job *j = self.j
        # inbox.stopping is set by the loop while this thread reads it (core/atomic.h).
        cdef bint keep = ((self.req_flags & FL_REQ_KEEP_ALIVE) and not a.close
                          and not fl_atomic_load_int(&j.inbox.stopping))
        cdef const char *ch = CONN_CLOSE_LINE
        cdef char *p
        if keep:
            ch = CONN_KEEP_ALIVE_LINE if self.req_flags & FL_REQ_HTTP10 else NO_LINE
        else:
            self.end |= END_CLOSE
        p = self.out.room(head_size(a, ch) + extra)
        p = write_head(p, a, self.out.date(), ch)
        self.out.len = p - self.out.buf
        return p

    cdef void complete(self) except *:
        self.phase = PH_DONE
        if self.j.stream and not fl_job_body_read(self.j):
            self.end |= END_CLOSE  # part of the body was not read: close after answering
        if self.recv_waiter is not None and not self.recv_waiter.done():
            self.recv_waiter.set_result(None)  # a receive() waiting for the end: disconnect
        self.answer_ended()

    cdef void answer_ended(self) except *:
        """The current request's answer is whole (or cut). The job's last one (or one that
        closes the connection) goes out now, with what was gathered before it, and the loop
        may go on with the connection. One before it is gathered, since the next request of
        a pipelined batch usually answers at once too; what is gathered goes out at the
        asyncio loop's next iteration at the latest, so an application that goes on after
        its answer (a background task) never holds it back."""
        self.answered += 1
        if self.end or self.k == self.j.nreqs - 1:
            self.ended = True
            self.out.flush(self.j, MSG_F_END | self.end, self.answered)
        elif self.out.len > FL_BATCH_FLUSH:
            self.out.flush(self.j, 0, 0)
        elif not self.flush_due:
            self.flush_due = True
            self.bridge.loop.call_soon(self.flush_gathered)

    def flush_gathered(self):
        """Posts the answers gathered so far, unless the job has ended since."""
        self.flush_due = False
        if self.j != NULL and not self.ended and self.out is not None and self.out.len:
            self.out.flush(self.j, 0, 0)

    cdef void cut(self, str why) except *:
        """The head is out and the answer cannot be completed right: cut the connection."""
        self.end |= END_CLOSE | END_CUT
        self.phase = PH_DONE
        self.answer_ended()
        self.invalid(why)

    cdef void pathsend(self, dict message) except *:
        """http.response.pathsend: the file goes out with sendfile from the loop."""
        cdef Answer a = self.a
        cdef fl_msg *m
        cdef int fd
        cdef int64_t size
        path = message.get("path")
        if not isinstance(path, str) or not _os.path.isabs(path):
            self.invalid(f"pathsend needs an absolute path, not {path!r}")
        fd = _os.open(path, _os.O_RDONLY | getattr(_os, "O_CLOEXEC", 0))
        try:
            size = _os.fstat(fd).st_size
            if a.length is None:
                a.length = size
            elif a.length != size:
                self.invalid(f"Content-Length {a.length} for a file of {size} bytes")
        except BaseException:
            _os.close(fd)
            raise
        if self.j.stream and not fl_job_body_read(self.j):
            a.close = True  # as in whole(): the connection ends after this answer
        self.head(0)
        self.out.flush(self.j, 0, 0)
        if not a.send_body or size == 0:
            _os.close(fd)
        else:
            m = fl_msg_new(0, MSG_FILE)
            if m == NULL:
                _os.close(fd)
                raise MemoryError()
            m.fd = fd
            m.off = 0
            m.count = size
            fl_job_post(self.j, m)
            self.body_sent = size
        self.complete()

    cdef void trailers(self, dict message) except *:
        """http.response.trailers: gathered until the last one, then written after the last
        chunk (RFC 9112 7.1.2)."""
        cdef Answer t = Answer.__new__(Answer)
        try:
            asgi_fields(t, message.get("headers", ()))
        except (TypeError, ValueError) as exc:
            self.invalid(str(exc))
        self.trailer_fields += t.fields
        if not message.get("more_trailers", False):
            # Trailers need chunked coding: without it (HTTP/1.0, HEAD, a Content-Length)
            # the spec's message is still taken, and its fields dropped.
            if self.a.chunked:
                data = b"0\r\n" + self.trailer_fields + b"\r\n"
                memcpy(self.out.room(len(data)), PyBytes_AS_STRING(data), len(data))
                self.out.len += len(data)
            self.complete()

    @cython.linetrace(False)  # holds a lock of handoff.pyx: see there
    @cython.profile(False)
    async def wait_room(self):
        """send() waits while the client is more than FL_HIGH_WATER behind."""
        cdef fl_job *j = self.j
        cdef bint behind
        while True:
            with nogil:
                pthread_mutex_lock(&j.lock)
                behind = not j.gone and j.posted > j.sent + FL_HIGH_WATER
                if behind:
                    j.wait_room = 1
                pthread_mutex_unlock(&j.lock)
            if not behind:
                return
            await self.wait("send")

    # ---- the end of a request -----------------------------------------------------------------

    cdef void app_failed(self, exc) noexcept:
        if isinstance(exc, ClientDisconnected):
            return  # the client left: nothing to answer, nothing wrong with the application
        if isinstance(exc, InvalidMessage):
            return  # counted and logged by invalid() already
        self.bridge.app_errors += 1
        if isinstance(exc, Exception):
            try:
                log.error("fastloop: %s raised while answering %s", self.bridge.app_name,
                          self.request_name(), exc_info=exc)
            except BaseException:
                pass

    cdef void finish(self) except *:
        """After the application returned (or raised): a clean 500 (or the core's status for
        a refused body) if nothing was written, a cut connection if the answer is partial."""
        cdef int status
        if self.phase == PH_DONE:
            return
        if self.phase == PH_NONE or self.phase == PH_STARTED:
            if job_gone(self.j):
                self.end |= END_CLOSE | END_CUT
                self.phase = PH_DONE
                self.answer_ended()
                return
            status = self.body_error or 500
            self.a = plan_answer(Response(STATUS_BODIES.get(status, b"Internal Server Error\n"),
                                          status=status, content_type="text/plain"),
                                 self.req_flags)
            if self.body_error:
                self.a.close = True
            self.whole(self.a.body)
        else:
            self.end |= END_CLOSE | END_CUT
            self.phase = PH_DONE
            self.answer_ended()
