# The WebSocket engine driven from Python, for tests and tools: the same nogil functions a
# connection calls, over buffers this module owns.

from libc.stdlib cimport free, malloc


DEFAULT_WS_DEFLATE = {
    "server_max_window_bits": 15,
    "client_max_window_bits": 15,
    "server_no_context_takeover": False,
    "client_no_context_takeover": False,
}


cdef fl_ws_deflate_config deflate_config_from(dict overrides) except *:
    cdef fl_ws_deflate_config cfg
    values = dict(DEFAULT_WS_DEFLATE, **(overrides or {}))
    unknown = set(values) - set(DEFAULT_WS_DEFLATE)
    if unknown:
        raise TypeError(f"unknown deflate settings: {sorted(unknown)}")
    for name in ("server_max_window_bits", "client_max_window_bits"):
        if not 8 <= values[name] <= 15:
            raise ValueError(f"{name} must be between 8 and 15")
    cfg.server_max_window_bits = values["server_max_window_bits"]
    cfg.client_max_window_bits = values["client_max_window_bits"]
    cfg.server_no_context_takeover = values["server_no_context_takeover"]
    cfg.client_no_context_takeover = values["client_no_context_takeover"]
    return cfg


def ws_accept(bytes key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    cdef char out[FL_WS_ACCEPT_LEN]
    fl_ws_accept(key, len(key), out)
    return out[:FL_WS_ACCEPT_LEN]


def ws_handshake(bytes head, str subprotocols="", dict deflate=None):
    """Answers a request head as a server would: (status, answer, params). status 0 means not
    a WebSocket upgrade (serve it as HTTP); 400 and 426 reject it (answer is the 426 one);
    101 accepts it, with params the negotiated permessage-deflate settings or None. deflate:
    None refuses compression, a dict (DEFAULT_WS_DEFLATE's keys) offers it."""
    cdef fl_request req
    cdef fl_limits lim = limits_from(None)
    cdef fl_span key, proto
    cdef fl_ws_deflate_config cfg
    cdef fl_ws_deflate_params params
    cdef char accept[FL_WS_ACCEPT_LEN]
    cdef char ext[FL_WS_EXT_RESPONSE_MAX]
    cdef size_t elen = 0, plen = 0
    cdef bytes supported = subprotocols.encode()
    cdef const char *buf = head
    cdef Py_ssize_t end = fl_find_head_end(buf, len(head), 0)
    if end <= 0:
        return 400, b"", None
    cdef int rc = fl_parse_head(buf, <uint32_t>end, &req, &lim)
    if rc:
        return rc, b"", None
    rc = fl_ws_check_upgrade(buf, &req, &key)
    if rc == 1:
        return 0, b"", None
    if rc == -426:
        return 426, <bytes>FL_WS_426, None
    if rc < 0:
        return -rc, b"", None
    fl_ws_accept(buf + key.off, key.len, accept)
    if fl_ws_select_subprotocol(buf, &req, supported, len(supported), &proto) == 0:
        plen = proto.len
    else:
        proto.off = 0
    result = None
    if deflate is not None:
        cfg = deflate_config_from(deflate)
        if fl_ws_negotiate_deflate(buf, &req, &cfg, &params) == 0:
            elen = fl_ws_deflate_response(&params, ext)
            result = {
                "server_no_context_takeover": bool(params.server_no_context_takeover),
                "client_no_context_takeover": bool(params.client_no_context_takeover),
                "server_max_window_bits": params.server_max_window_bits,
                "client_max_window_bits": params.client_max_window_bits,
            }
    cdef char *out = <char *>malloc(FL_WS_101_ROOM + plen + elen)
    if out == NULL:
        raise MemoryError()
    cdef const char *sp = supported
    try:
        n = fl_ws_write_101(out, accept, sp + proto.off, plen, ext, elen)
        return 101, out[:n], result
    finally:
        free(out)


def ws_frame(int opcode, bytes payload, bint fin=True, bint rsv1=False, bytes mask=None):
    """One frame as the writer makes it; with a 4-byte mask, as a client would send it."""
    cdef uint8_t head[FL_WS_MAX_HEADER]
    cdef const uint8_t *key = NULL
    if mask is not None:
        if len(mask) != 4:
            raise ValueError("a mask is 4 bytes")
        key = <const uint8_t *><const char *>mask  # SAFETY: mask is referenced until we return
    cdef size_t k = fl_ws_frame_header(head, fin, rsv1, opcode, len(payload), key)
    cdef bytearray body = bytearray(payload)
    if key != NULL and len(body):
        # SAFETY: body is this call's own bytearray; masking is the same XOR as unmasking.
        fl_ws_unmask(<uint8_t *><char *>body, len(body), key, 0)
    return (<char *>head)[:k] + bytes(body)


def ws_close_frame(int code=0, bytes reason=b""):
    """A server's close frame (code 0: empty); ValueError when fl_ws_write_close refuses it."""
    cdef uint8_t out[2 + FL_WS_MAX_CONTROL]
    cdef Py_ssize_t n = fl_ws_write_close(out, code, reason, len(reason))
    if n < 0:
        raise ValueError(f"cannot send close code {code} with a {len(reason)}-byte reason")
    return (<char *>out)[:n]


def ws_control_frame(int opcode, bytes payload):
    """A server's ping or pong; ValueError for a payload over 125 bytes."""
    cdef uint8_t out[2 + FL_WS_MAX_CONTROL]
    cdef Py_ssize_t n = fl_ws_write_control(out, opcode, payload, len(payload))
    if n < 0:
        raise ValueError("a control frame carries at most 125 bytes")
    return (<char *>out)[:n]


def ws_utf8_check(bytes data, int state=0):
    """Runs the UTF-8 validator from state: (index of the first bad byte or -1, state)."""
    cdef uint8_t st = <uint8_t>state
    cdef Py_ssize_t bad = fl_utf8_feed(&st, data, len(data))
    return bad, st


cdef class WsParser:
    """A connection's receive side: feed() bytes as they arrive, get a list of events:
    ("text", str), ("binary", bytes), ("ping", bytes), ("pong", bytes), ("close", code,
    reason) and ("error", close_code, description). Nothing is reported after a close or an
    error. deflate: the negotiated params (ws_handshake's third result) or None."""

    cdef fl_ws_parser p
    cdef fl_ws_inflater inf
    cdef uint8_t *room
    cdef size_t room_len
    cdef bytearray message

    def __cinit__(self):
        memset(&self.inf, 0, sizeof(fl_ws_inflater))
        self.room = NULL

    def __init__(self, uint64_t max_size=1 << 20, dict deflate=None, bint from_server=False,
                 size_t inflate_room=4096):
        cdef int flags = FL_WS_FROM_SERVER if from_server else 0
        if deflate is not None:
            flags |= FL_WS_DEFLATE
            # The receiving side inflates with the window and takeover its peer compresses with.
            side = "server" if from_server else "client"
            fl_ws_inflater_init(&self.inf, deflate[f"{side}_max_window_bits"],
                                deflate[f"{side}_no_context_takeover"])
        fl_ws_parser_init(&self.p, max_size, flags)
        self.room_len = inflate_room if inflate_room > 0 else 1
        self.room = <uint8_t *>malloc(self.room_len)  # inflate output, freed in __dealloc__
        if self.room == NULL:
            raise MemoryError()
        self.message = bytearray()

    def __dealloc__(self):
        fl_ws_inflater_free(&self.inf)
        free(self.room)

    @property
    def error_at(self):
        """Stream offset of the byte that failed the connection, or None."""
        return self.p.error_at if self.p.state == FL_WS_FAILED else None

    @property
    def inflate_memory(self):
        """(bytes zlib holds now, the most it held) for this connection's inflater."""
        return self.inf.mem.bytes, self.inf.mem.peak

    cdef int inflate(self, fl_ws_event *ev) except? -1:
        cdef size_t produced
        cdef int rc = fl_ws_inflate_begin(&self.inf, ev.data, ev.len, ev.fin)
        while rc == 0 or rc == 1:
            rc = fl_ws_inflate_step(&self.inf, &self.p, self.room, self.room_len, &produced)
            self.message += (<char *>self.room)[:produced]
            if rc == 0:
                break
        return rc

    def feed(self, bytes data):
        cdef list events = []
        cdef fl_ws_event ev
        cdef Py_ssize_t used
        cdef int rc
        # SAFETY: the parser unmasks in place, so it works on a private copy that lives until
        # this call returns; every event's span into it is copied out before then.
        cdef bytearray copy = bytearray(data)
        cdef uint8_t *buf = <uint8_t *><char *>copy
        cdef size_t i = 0, n = len(copy)
        if self.p.state == FL_WS_FAILED or self.p.state == FL_WS_CLOSED:
            return events
        while True:
            used = fl_ws_parse(&self.p, buf + i, n - i, &ev)
            i += <size_t>used
            if ev.type == FL_WS_EV_NONE:
                break
            if ev.type == FL_WS_EV_DATA:
                if ev.compressed:
                    rc = self.inflate(&ev)
                    if rc < 0:
                        fl_ws_inflate_failed(&self.p, &ev, rc)
                        events.append(("error", ev.code, ev.reason.decode()))
                        break
                else:
                    self.message += (<const char *>ev.data)[:ev.len]
                if ev.fin:
                    payload = bytes(self.message)
                    self.message = bytearray()
                    if ev.opcode == FL_WS_TEXT:
                        events.append(("text", payload.decode()))
                    else:
                        events.append(("binary", payload))
            elif ev.type == FL_WS_EV_PING:
                events.append(("ping", (<const char *>ev.data)[:ev.len]))
            elif ev.type == FL_WS_EV_PONG:
                events.append(("pong", (<const char *>ev.data)[:ev.len]))
            elif ev.type == FL_WS_EV_CLOSE:
                events.append(("close", ev.code, (<const char *>ev.data)[:ev.len].decode()))
                break
            else:
                events.append(("error", ev.code, ev.reason.decode()))
                break
        return events


cdef class WsDeflater:
    """A connection's compressor for sent messages: compress() returns the payload of one
    message's frame (sent with RSV1)."""

    cdef fl_ws_deflater d

    def __cinit__(self):
        memset(&self.d, 0, sizeof(fl_ws_deflater))

    def __init__(self, int window_bits=15, bint no_context_takeover=False, int level=6, int mem_level=8):
        fl_ws_deflater_init(&self.d, window_bits, no_context_takeover, level, mem_level)

    def __dealloc__(self):
        fl_ws_deflater_free(&self.d)

    @property
    def memory(self):
        """(bytes zlib holds now, the most it held)."""
        return self.d.mem.bytes, self.d.mem.peak

    def compress(self, bytes data):
        cdef size_t room = fl_ws_deflate_bound(len(data))
        cdef uint8_t *out = <uint8_t *>malloc(room)
        if out == NULL:
            raise MemoryError()
        try:
            n = fl_ws_deflate(&self.d, data, len(data), out, room)
            if n < 0:
                raise_errno(<int>-n, "deflate")
            return (<char *>out)[:n]
        finally:
            free(out)


def ws_sha1(bytes data):
    """SHA-1 of data (ws_sha1.h), to check it against hashlib at every padding boundary."""
    cdef uint8_t out[20]
    fl_sha1(data, len(data), out)
    return (<char *>out)[:20]


def ws_parse_count(bytearray data, uint64_t max_size=1 << 20):
    """Parses data (a client's frames, unmasked in place) to its end without the GIL, as a
    connection's read loop would, and counts what it found: (message pieces, messages,
    control frames, close code of an error or 0). For benchmarks of the parser alone."""
    cdef fl_ws_parser p
    cdef fl_ws_event ev
    cdef uint8_t *buf = <uint8_t *><char *>data
    cdef size_t i = 0, n = len(data)
    cdef uint64_t pieces = 0, messages = 0, controls = 0
    cdef int error = 0
    fl_ws_parser_init(&p, max_size, 0)
    # SAFETY: data is a bytearray this call holds a reference to and nothing else resizes
    # while the GIL is released.
    with nogil:
        while i < n:
            i += <size_t>fl_ws_parse(&p, buf + i, n - i, &ev)
            if ev.type == FL_WS_EV_DATA:
                pieces += 1
                messages += ev.fin
            elif ev.type == FL_WS_EV_ERROR:
                error = ev.code
                break
            elif ev.type != FL_WS_EV_NONE:
                controls += 1
                if ev.type == FL_WS_EV_CLOSE:
                    break
    return pieces, messages, controls, error
