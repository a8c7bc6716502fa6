# ASGI 3 applications beside the loop, part 3: a WebSocket connection (asgiref's WebSocket
# spec 2.4 and its websocket.http.response extension), on the asyncio loop of the bridge.
#
# The loop (ws_conn.pyx) did the parsing: a job marked FL_REQ_WEBSOCKET carries a valid upgrade
# request, and once accepted, its body is a stream of records, each a message piece (text or
# binary, the last one marked FIN) or the close that ends it. This side turns them into
# websocket.receive / websocket.disconnect messages, and the application's messages into the
# 101 (then MSG_WS_OPEN: the loop reads frames from there on), frames (permessage-deflate done
# here, on this thread, by the connection's own compressor), the close (MSG_WS_CLOSE), or a
# plain HTTP answer that refuses the upgrade (through AsgiCall's HTTP answer). Backpressure is
# the HTTP one: send() waits while the client is more than FL_HIGH_WATER behind, and the loop
# stops reading while FL_HIGH_WATER of records wait for receive().

cimport cython
from collections.abc import Coroutine as _Coroutine

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, memset


# AsgiWsCall.ws: where the WebSocket is
cdef enum:
    WS_CONNECTING = 0   # websocket.connect not yet received by the application
    WS_HANDSHAKE = 1    # ... received: accept, close (403) or an HTTP answer is due
    WS_OPEN = 2         # accepted: messages both ways
    WS_CLOSED = 3       # closed (either side), or refused: nothing more is sent
    WS_HTTP = 4         # refused with websocket.http.response.*: the HTTP answer is going out

cdef enum:
    WS_COMPRESS_MIN = 128       # shorter messages go uncompressed (RFC 7692 allows either)

cdef dict WS_CONNECT = {"type": "websocket.connect"}
cdef tuple NO_SUBPROTOCOLS = ()  # (the spec's "iterable of strings"; most clients offer none)
cdef dict WS_EXTENSIONS = {"websocket.http.response": {}}  # shared by every scope, as http's


cdef class _Ready:
    """What receive() returns for a message that is there already: an awaitable that gives
    it at once (no coroutine frame, no future: an idle connection holds neither)."""

    cdef object value

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration(self.value)

    def send(self, value):
        raise StopIteration(self.value)

    def throw(self, typ, val=None, tb=None):
        raise typ if val is None else val

    def close(self):
        pass


cdef inline _Ready ready(value):
    cdef _Ready r = _Ready.__new__(_Ready)
    r.value = value
    return r
cdef fl_limits WS_HEAD_LIMITS = limits_from({
    "request_line": MAX_HEAD_BYTES, "header_bytes": MAX_HEAD_BYTES, "field_size": MAX_HEAD_BYTES,
    "fields": MAX_HEADERS, "lenient_targets": True})  # the loop checked the head already


@cython.final
cdef class _WsTask:
    """The coroutine a WebSocket's task runs (AsgiWsCall.step does the work)."""

    cdef AsgiWsCall call

    def __await__(self):
        return self

    def send(self, value):
        return self.call.step(value, None)

    def throw(self, typ, val=None, tb=None):
        return self.call.step(None, typ() if val is None and isinstance(typ, type) else
                              (typ if val is None else val))

    def close(self):
        self.call.stop_app()


_Coroutine.register(_WsTask)  # asyncio makes tasks of coroutines only


class WebSocketConfig:
    """What a server does with WebSockets: max_size (the largest message, after inflating:
    close 1009 beyond), per_message_deflate (negotiate RFC 7692 compression), and the windows
    and memory the compressor may use (the defaults keep it near 40 KiB per connection)."""

    def __init__(self, max_size=16 * 1024 * 1024, per_message_deflate=True, server_max_window_bits=12,
                 client_max_window_bits=15, compress_level=6, mem_level=5):
        if not 8 <= server_max_window_bits <= 15 or not 8 <= client_max_window_bits <= 15:
            raise ValueError("window bits are 8..15")
        if max_size < 1:
            raise ValueError("ws max_size must be positive")
        self.max_size = int(max_size)
        self.per_message_deflate = bool(per_message_deflate)
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level


cdef class AsgiWsCall(AsgiCall):
    """One WebSocket connection's application call. AsgiCall's HTTP answer serves the
    websocket.http.response extension (and the 403 / 500 of a refused upgrade)."""

    cdef int ws
    cdef object ws_config
    cdef fl_ws_deflater *deflater   # the connection's compressor, if negotiated (malloc'd: zlib
                                    # points into it, so it must not move)
    cdef char *recs                 # records taken from the job, not yet turned into messages
    cdef size_t recs_len
    cdef size_t recs_pos
    cdef list pieces                # a fragmented message's pieces so far
    cdef dict disconnect            # the websocket.disconnect given, once given
    cdef str path                   # for the log (the head is freed once accepted)
    cdef object coro                # the application's coroutine, while it runs

    def __dealloc__(self):
        if self.deflater != NULL:
            fl_ws_deflater_free(self.deflater)
            free(self.deflater)
        free(self.recs)

    # The task of a WebSocket runs a _WsTask, which drives the application's coroutine through
    # step(): a WebSocket lives long and mostly waits, and a coroutine of ours around the
    # application's (as AsgiCall.run is) would cost an idle connection its frame and closure.

    def run(self):
        """What the bridge makes a task of: a coroutine that runs the application once."""
        cdef _WsTask t = _WsTask.__new__(_WsTask)
        t.call = self
        return t

    cdef object step(self, value, exc):
        """One step of the task: starts the application's coroutine, or sends it value, or
        throws exc into it; how it ends is acted on in app_ended()."""
        if self.coro is None:
            if self.j == NULL:
                raise StopIteration  # (ended before it began: the server stops)
            try:
                if exc is not None:
                    raise exc
                self.ws_config = self.bridge.ws_config
                self.begin(0)
                # The call itself is receive (its __call__): one bound method less.
                coro = self.bridge.app(self.ws_scope(), self, self.ws_send)
                self.coro = coro if hasattr(coro, "send") else coro.__await__()
            except BaseException as e:
                self.app_ended(e)
            value = None
        try:
            if exc is None:
                return self.coro.send(value)
            return self.coro.throw(exc)
        except BaseException as e:
            self.app_ended(e)

    cdef void stop_app(self) except *:
        """The task's coroutine is closed (it was never finished: the loop is closing)."""
        coro, self.coro = self.coro, None
        if coro is not None:
            coro.close()
        if self.j != NULL:
            try:
                self.app_ended(GeneratorExit())
            except GeneratorExit:
                pass

    cdef void app_ended(self, exc) except *:
        """The application's coroutine returned (StopIteration) or raised exc: closes the
        WebSocket the way the spec says, gives the job back, and ends the task: normally,
        unless exc is a cancellation or an exit, which goes on."""
        cdef fl_job *j = self.j
        self.coro = None
        if j == NULL:
            raise exc
        try:
            try:
                if isinstance(exc, StopIteration):
                    if self.ws == WS_OPEN:
                        self.ws_close(FL_WS_NORMAL, b"")  # returned without closing: normal
                    elif self.ws < WS_OPEN:
                        self.refuse(403)  # returned without accepting (the spec's 403)
                    elif self.ws == WS_HTTP and self.phase != PH_DONE:
                        self.finish()  # an HTTP answer left incomplete: cut
                elif not isinstance(exc, GeneratorExit):
                    if self.ws != WS_CLOSED:
                        self.app_failed(exc)
                    if self.ws == WS_OPEN:
                        self.ws_close(FL_WS_INTERNAL_ERROR, b"")
                    elif self.ws < WS_OPEN:
                        self.refuse(500)
                    elif self.ws == WS_HTTP:
                        self.finish()
            finally:
                self.bridge.handled += 1
                self.post_end()
        finally:
            self.give_back()
        if isinstance(exc, Exception) and not isinstance(exc, StopIteration):
            raise StopIteration  # handled: the task ends normally
        raise exc

    cdef dict ws_scope(self):
        """The websocket scope: the http one's keys but method, with ws/wss, the offered
        subprotocols and this extension."""
        cdef dict scope
        # Asked of the socket, not kept in the bridge's cache of addresses: a WebSocket has one
        # scope in its whole life, and an idle one should cost as little as possible.
        self.addresses = peer_pair(self.j)
        scope = self.scope()
        self.path = scope["path"]  # (the scope's own object)
        del scope["method"]
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        offered = None
        for name, value in scope["headers"]:
            if name == b"sec-websocket-protocol":
                if offered is None:
                    offered = []
                offered.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
        scope["subprotocols"] = offered if offered is not None else NO_SUBPROTOCOLS
        scope["extensions"] = WS_EXTENSIONS
        return scope

    cdef str request_name(self):
        return "WebSocket " + (self.path or "?")

    # ---- receive ----------------------------------------------------------------------------

    def __call__(self):
        return self.ws_receive()

    def ws_receive(self):
        """The next message as an awaitable: done at once when it is there, else a future
        that wake() resolves when it comes (one wait, however many wake-ups it takes)."""
        if self.ws == WS_CONNECTING:
            self.ws = WS_HANDSHAKE
            return ready(WS_CONNECT)
        if self.recv_waiter is not None and not self.recv_waiter.done():
            raise RuntimeError("two receive() calls waiting on one WebSocket")
        message = self.poll()
        if message is not None:
            return ready(message)
        self.recv_waiter = self.bridge.loop.create_future()
        return self.recv_waiter

    cdef object poll(self):
        """The next message if there is one, else None (a wake-up will come)."""
        if self.disconnect is not None:
            return self.disconnect
        if self.ws == WS_OPEN or self.ws == WS_CLOSED:
            return self.next_message()
        if self.peer_left():
            return self.gone(1006, "")  # before accepting: the client gave up
        return None

    cdef void wake(self) noexcept:
        """The bridge's side: records came, or the client or connection went: a waiting
        receive() gets its message; a waiting send() looks again."""
        fut = self.recv_waiter
        if fut is not None and not fut.done():
            try:
                message = self.poll()
            except BaseException as exc:
                self.recv_waiter = None
                fut.set_exception(exc)
            else:
                if message is not None:
                    self.recv_waiter = None
                    fut.set_result(message)
        fut = self.send_waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    cdef dict gone(self, int code, str reason):
        self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self.bridge.disconnects += 1
        if self.ws != WS_HTTP:
            self.ws = WS_CLOSED
        return self.disconnect

    cdef object next_message(self):
        """The next whole message (or the disconnect) from the records, taking more from the
        job when they run out; None when none is complete yet (a wake-up will come)."""
        cdef const uint8_t *r
        cdef size_t n
        cdef int kind, flags, code
        while True:
            if self.recs_pos + FL_WS_RECORD_HEAD > self.recs_len:
                if not self.take_records():
                    if self.j == NULL or job_gone(self.j):
                        return self.gone(1006, "")
                    return None
                continue
            r = <const uint8_t *>self.recs + self.recs_pos
            kind = r[0]
            flags = r[1]
            n = r[2] | (<size_t>r[3] << 8) | (<size_t>r[4] << 16) | (<size_t>r[5] << 24)
            self.recs_pos += FL_WS_RECORD_HEAD + n
            r += FL_WS_RECORD_HEAD
            if kind == FL_WS_CLOSE:
                code = FL_WS_NO_STATUS
                if flags & FL_WS_REC_ABNORMAL:
                    code = 1006
                elif n >= 2:
                    code = (r[0] << 8) | r[1]
                reason = PyUnicode_DecodeUTF8(<const char *>r + 2, n - 2, "replace") if n > 2 else ""
                if not (flags & FL_WS_REC_ABNORMAL):
                    # The peer's close is taken: the loop answers it now (after what we sent).
                    fl_job_post(self.j, fl_msg_new(0, MSG_WS_CLOSE))
                return self.gone(code, reason)
            if not (flags & FL_WS_REC_FIN):
                if self.pieces is None:
                    self.pieces = []  # (made for a fragmented message only: idle ones hold none)
                self.pieces.append(PyBytes_FromStringAndSize(<const char *>r, n))
                continue
            if self.pieces:
                self.pieces.append(PyBytes_FromStringAndSize(<const char *>r, n))
                data = b"".join(self.pieces)
                self.pieces = None
                if kind == FL_WS_TEXT:
                    return {"type": "websocket.receive", "text": data.decode("utf-8")}
                return {"type": "websocket.receive", "bytes": data}
            if kind == FL_WS_TEXT:
                # (The loop checked it is UTF-8, incrementally, fragments included.)
                return {"type": "websocket.receive",
                        "text": PyUnicode_DecodeUTF8(<const char *>r, n, NULL)}
            return {"type": "websocket.receive", "bytes": PyBytes_FromStringAndSize(<const char *>r, n)}

    cdef bint take_records(self):
        """Swaps the job's records in (what is left of the last batch is done). False when
        there are none (the job's wait_body flag is then set: a wake-up will come)."""
        cdef fl_job *j = self.j
        cdef char *data
        cdef size_t n = 0
        cdef int end = 0, gone = 0
        if j == NULL:
            return False
        free(self.recs)
        self.recs = NULL
        self.recs_len = self.recs_pos = 0
        with nogil:
            data = fl_job_take_body(j, &n, &end, &gone)
        self.recs = data
        self.recs_len = n
        return n != 0

    # ---- send -------------------------------------------------------------------------------

    def ws_send(self, message):
        """websocket.accept / .send / .close, and websocket.http.response.* before accepting.
        Returns an awaitable, done at once unless the client is behind (as AsgiCall.send)."""
        kind = message.get("type") if type(message) is dict else None
        if kind is None:
            self.invalid(f"an ASGI message is a dict with a type, not {message!r}")
        if self.ws == WS_OPEN:
            if kind == "websocket.send":
                return self.send_message(message)
            if kind == "websocket.close":
                self.ws_close(message.get("code", FL_WS_NORMAL) or FL_WS_NORMAL,
                           (message.get("reason") or "").encode("utf-8"))
                return SENT
            self.invalid(f"unexpected message {kind!r} on an open WebSocket")
        if self.ws == WS_CLOSED:
            if kind == "websocket.close":
                return SENT  # closing a closed connection: nothing to do
            raise ClientDisconnected("the WebSocket is closed")
        if self.ws == WS_HTTP:
            if kind == "websocket.http.response.body":
                return self.send(dict(message, type="http.response.body"))
            self.invalid(f"expected websocket.http.response.body, got {kind!r}")
        if self.j == NULL or self.peer_left():
            raise ClientDisconnected("the client has gone")
        if kind == "websocket.accept":
            self.accept(message)
        elif kind == "websocket.close":
            self.refuse(403)
        elif kind == "websocket.http.response.start":
            self.ws = WS_HTTP
            return self.send(dict(message, type="http.response.start"))
        else:
            self.invalid(f"expected websocket.accept, websocket.close or an HTTP answer, got {kind!r}")
        return SENT

    cdef void refuse(self, int status) except *:
        """The upgrade is refused with a plain answer (403 as the spec says, or 500)."""
        self.ws = WS_CLOSED
        if self.ended or job_gone(self.j):
            return
        self.a = plan_answer(Response(STATUS_BODIES.get(status, b"Forbidden\n"), status=status,
                                      content_type="text/plain"), self.req_flags)
        self.a.close = True
        self.whole(self.a.body)

    cdef void accept(self, dict message) except *:
        """The 101 (with the subprotocol, the application's headers and the negotiated
        permessage-deflate), then MSG_WS_OPEN: the loop reads frames from there on."""
        cdef fl_job *j = self.j
        cdef fl_jobreq *q = &j.reqs[0]
        cdef const char *head = j.req + q.off
        cdef fl_request *req = <fl_request *>malloc(sizeof(fl_request))
        cdef uint32_t scanned = 0
        cdef fl_span key
        cdef char accept_key[FL_WS_ACCEPT_LEN]
        cdef char ext[FL_WS_EXT_RESPONSE_MAX]
        cdef size_t elen = 0
        cdef fl_ws_deflate_config cfg
        cdef fl_ws_deflate_params params
        cdef fl_msg *m
        cdef bint deflate = False
        cdef char *room
        cdef size_t n
        cdef Answer extra
        if req == NULL:
            raise MemoryError()
        try:
            # The loop parsed and checked this head before; parsed again here, once.
            if fl_frame_head(head, q.head_len, &scanned, req, &WS_HEAD_LIMITS) <= 0 or \
                    fl_ws_check_upgrade(head, req, &key) != 0:
                raise RuntimeError("fastloop: a WebSocket job without a valid upgrade")
            fl_ws_accept(head + key.off, key.len, accept_key)
            config = self.ws_config
            if config.per_message_deflate:
                cfg.server_max_window_bits = config.server_max_window_bits
                cfg.client_max_window_bits = config.client_max_window_bits
                cfg.server_no_context_takeover = False
                cfg.client_no_context_takeover = False
                if fl_ws_negotiate_deflate(head, req, &cfg, &params) == 0:
                    deflate = True
                    elen = fl_ws_deflate_response(&params, ext)
        finally:
            free(req)
        subprotocol = message.get("subprotocol")
        proto = b""
        if subprotocol is not None:
            if type(subprotocol) is str:
                proto = (<str>subprotocol).encode("latin-1", "replace")
            if not proto or not is_token(<const unsigned char *>PyBytes_AS_STRING(proto), len(proto)):
                self.invalid(f"invalid subprotocol {subprotocol!r}")
        extra = Answer.__new__(Answer)
        try:
            asgi_fields(extra, message.get("headers", ()))
        except (TypeError, ValueError) as exc:
            self.invalid(str(exc))
        if deflate:
            self.deflater = <fl_ws_deflater *>malloc(sizeof(fl_ws_deflater))
            if self.deflater == NULL:
                raise MemoryError()
            fl_ws_deflater_init(self.deflater, params.server_max_window_bits,
                                params.server_no_context_takeover, config.compress_level, config.mem_level)
        fields = extra.fields
        room = self.out.room(FL_WS_101_ROOM + len(proto) + elen + len(fields))
        n = fl_ws_write_101(room, accept_key, PyBytes_AS_STRING(proto), len(proto), ext, elen)
        if fields:
            # The application's fields go before the blank line that ends the head.
            memcpy(room + n - 2, PyBytes_AS_STRING(fields), len(fields))
            memcpy(room + n - 2 + len(fields), b"\r\n", 2)
            n += len(fields)
        self.out.len += n
        self.out.flush(j, 0, 0)
        if len(self.bridge.spare) < 64:
            self.bridge.spare.append(self.out)  # an open WebSocket needs none: idle ones cost less
        self.out = None
        m = fl_msg_new(0, MSG_WS_OPEN)
        if m == NULL:
            raise MemoryError()
        m.count = config.max_size
        if deflate:
            m.off = 0x100 | params.client_max_window_bits | (0x200 if params.client_no_context_takeover else 0)
        fl_job_post(j, m)
        self.ws = WS_OPEN
        if j.req_apart:
            # Nothing reads the head any more: an idle WebSocket does not keep it.
            free(j.req)
            j.req = NULL
            j.req_apart = 0

    cdef object send_message(self, dict message):
        """websocket.send: one frame (compressed if negotiated and worth it), posted."""
        cdef fl_msg *m
        cdef const uint8_t *p
        cdef Py_ssize_t n, k
        cdef size_t bound
        cdef int opcode
        cdef size_t hlen
        cdef uint8_t *out
        if self.peer_left():
            raise ClientDisconnected("the client has closed the WebSocket")
        data = message.get("bytes")
        if data is not None:
            opcode = FL_WS_BINARY
            if type(data) is not bytes:
                if not isinstance(data, (bytearray, memoryview)):
                    self.invalid(f"websocket.send bytes must be bytes, not {type(data).__name__}")
                data = bytes(data)
        else:
            text = message.get("text")
            if type(text) is not str:
                self.invalid(f"websocket.send needs bytes or text, not {message!r}")
            opcode = FL_WS_TEXT
            data = (<str>text).encode("utf-8")
        p = <const uint8_t *>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        m = fl_msg_new(0, MSG_DATA)
        if m == NULL:
            raise MemoryError()
        m.flags = MSG_WS_FRAME
        if self.deflater != NULL and n >= WS_COMPRESS_MIN:
            bound = fl_ws_deflate_bound(n)
            m.data = <char *>malloc(FL_WS_MAX_HEADER + bound)
            if m.data == NULL:
                fl_msg_free(m)
                raise MemoryError()
            out = <uint8_t *>m.data + FL_WS_MAX_HEADER
            with nogil:
                k = fl_ws_deflate(self.deflater, p, n, out, bound)
            if k < 0:
                fl_msg_free(m)
                raise MemoryError()
            # The header goes right before the payload, which stays where zlib wrote it.
            hlen = fl_ws_frame_header(<uint8_t *>m.data, True, True, opcode, k, NULL)
            memmove(m.data + hlen, out, k)
            m.len = hlen + k
        else:
            m.data = <char *>malloc(FL_WS_MAX_HEADER + n)
            if m.data == NULL:
                fl_msg_free(m)
                raise MemoryError()
            hlen = fl_ws_frame_header(<uint8_t *>m.data, True, False, opcode, n, NULL)
            memcpy(m.data + hlen, p, n)
            m.len = hlen + n
        if fl_job_post(self.j, m) < 0:
            raise ClientDisconnected("the client has closed the WebSocket")
        if fl_job_behind(self.j):
            return self.wait_room()
        return SENT

    cdef void post_end(self) except *:
        """The call's last message (MSG_END), once: the loop is done with the application."""
        cdef fl_msg *m
        if self.ended:
            return
        self.ended = True
        m = fl_msg_new(0, MSG_DATA)
        if m == NULL:
            raise MemoryError()
        m.flags = MSG_F_END | END_CLOSE
        m.count = 1
        fl_job_post(self.j, m)

    cdef void ws_close(self, object code, bytes reason) except *:
        """Our close (the loop writes the frame, then waits for the peer's); the application's
        call is over for the connection (MSG_END), whatever it still does."""
        cdef fl_msg *m
        if type(code) is not int or not fl_ws_close_code_ok(code):
            self.invalid(f"invalid WebSocket close code {code!r}")
        self.ws = WS_CLOSED
        m = fl_msg_new(0, MSG_WS_CLOSE)
        if m == NULL:
            raise MemoryError()
        m.count = code
        if reason:
            reason = reason[:FL_WS_MAX_CONTROL - 2]
            m.data = <char *>malloc(len(reason))
            if m.data == NULL:
                fl_msg_free(m)
                raise MemoryError()
            memcpy(m.data, PyBytes_AS_STRING(reason), len(reason))
            m.len = len(reason)
        fl_job_post(self.j, m)
        self.post_end()
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": ""}
