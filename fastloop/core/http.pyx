# Request-head parsing in the connection's buffer, without the GIL.
#
# Theory of operation. The connection code first finds the end of a head (fl_find_head_end),
# scanning only bytes it has not scanned before, so a client that trickles a head byte by
# byte costs O(n) in total, not O(n^2) (picohttpparser's last_len). Only a complete head is
# parsed (fl_parse_head), in one pass that can never run past it: every loop stops at the CR
# of the final CRLF CRLF. The parser is strict where RFC 9112 asks for it (token method and
# field names, no whitespace before a colon, CRLF only, no obs-fold, no control characters,
# a request-target and a Host of the URI grammar) and answers with the status the caller
# should send: 400, 413, 414, 431, 501 or 505.
#
# Lengths from the wire (Content-Length, chunk sizes) are parsed into 64 bits, saturating
# instead of overflowing, and compared with limits that limits_from keeps far below 2^63.
# Offsets into a buffer stay 32-bit: every buffer is capped below 4 GiB (FL_MAX_HEAD_BYTES
# for a head, worker.pyx FL_RBUF_MAX for a buffered body).
#
# This file frames and parses a head (and keeps the byte tables and the limits); the values
# of single fields and the request-target are checked in http_fields.pyx, and a chunked body
# is decoded by http_chunked.pyx.

from libc.string cimport memchr, memcmp


DEFAULT_LIMITS = {
    "request_line": 8190,         # RFC 9112 3: "at least 8000 octets" (nginx: 8 KiB buffers)
    "header_bytes": 65536,
    "field_size": 8190,           # gunicorn limit_request_field_size
    "fields": 101,                # 100 fields plus Host (gunicorn's limit_request_fields is 100)
    "body_bytes": 16 * 1024 * 1024,
    "lenient_targets": False,     # True: raw bytes >= 0x80 (UTF-8) allowed in a request-target
}


MAX_HEADERS = FL_MAX_HEADERS  # the most header fields limits["fields"] may allow
MAX_HEAD_BYTES = FL_MAX_HEAD_BYTES  # the most request_line, header_bytes or field_size may be
# The most limits["body_bytes"] may be: 1 TiB, beyond any upload over HTTP/1.1 and far below
# where a body length plus a head, a chunk size or a count of bytes read could overflow 63 bits.
MAX_BODY_BYTES = 1 << 40

cdef unsigned char fl_tchar[256]
cdef unsigned char fl_vchar[256]      # field-value bytes: HTAB, SP, VCHAR, obs-text
cdef unsigned char fl_target_strict[256]   # request-target bytes, but '%' (checked apart)
cdef unsigned char fl_target_lenient[256]  # ... and raw bytes >= 0x80 (limits["lenient_targets"])
cdef unsigned char fl_regname[256]    # reg-name bytes, but '%': unreserved and sub-delims
cdef unsigned char fl_hex[256]        # HEXDIG: its value + 1, 0 for any other byte
cdef unsigned char fl_digit[256]      # DIGIT


cdef void fl_init_tables() noexcept:
    # RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
    #                         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    cdef const char *extra = b"!#$%&'*+-.^_`|~"
    # RFC 3986 2.2, 2.3: sub-delims and the unreserved marks, what a reg-name may hold
    cdef const char *hostc = b"!$&'()*+,;=-._~"
    # RFC 3986 3.3, 3.4: a path or query also holds ":" "@" "/" "?". "[" and "]" are kept
    # too (an IP literal in absolute-form, and common in query strings as "a[]=1") although
    # RFC 3986 reserves them; "#" (a fragment is never sent), '"' "<" ">" "\" "^" "`" "{"
    # "|" "}" and bytes >= 0x80 are not in the grammar and get 400 (RFC 9112 3.2).
    cdef const char *targetc = b":@/?[]"
    cdef int c
    for c in range(256):
        alnum = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
        fl_tchar[c] = alnum
        fl_regname[c] = alnum
        fl_digit[c] = 48 <= c <= 57
        fl_hex[c] = (c - 47) if 48 <= c <= 57 else (c - 86) if 97 <= c <= 102 else \
            (c - 54) if 65 <= c <= 70 else 0
    while extra[0]:
        fl_tchar[<unsigned char>extra[0]] = 1
        extra += 1
    while hostc[0]:
        fl_regname[<unsigned char>hostc[0]] = 1
        hostc += 1
    for c in range(256):
        fl_target_strict[c] = fl_regname[c]
    while targetc[0]:
        fl_target_strict[<unsigned char>targetc[0]] = 1
        targetc += 1
    # One table lookup per byte instead of a chain of comparisons: parsing is most of the cost
    # of a small request.
    for c in range(256):
        fl_vchar[c] = c == 9 or (32 <= c <= 126) or c >= 128
        fl_target_lenient[c] = fl_target_strict[c] or c >= 128


fl_init_tables()


cdef inline bint fl_is_ows(char c) noexcept nogil:
    return c == c' ' or c == c'\t'


cdef inline bint fl_span_eq_lower(const char *buf, fl_span s, const char *lit, uint32_t n) noexcept nogil:
    # Case-insensitive compare against a lowercase literal. OR-ing 0x20 lowercases letters and
    # leaves '-' and digits alone, which is all a field name or token here contains.
    if s.len != n:
        return False
    cdef uint32_t i
    for i in range(n):
        if (<unsigned char>buf[s.off + i] | 0x20) != <unsigned char>lit[i]:
            return False
    return True


cdef Py_ssize_t fl_find_head_end(const char *buf, size_t n, size_t start) noexcept nogil:
    """Length of the head through CRLF CRLF when buf holds one, 0 when not yet, -400 when a
    line ends in a bare LF followed by another LF (no CRLF CRLF would ever come).
    start: bytes already scanned by an earlier call; the scan resumes 3 bytes before it."""
    cdef size_t i = start - 3 if start > 3 else 0
    cdef const char *nl
    while i < n:
        nl = <const char *>memchr(buf + i, c'\n', n - i)
        if nl == NULL:
            return 0
        i = nl - buf
        if i >= 3 and buf[i - 1] == c'\r' and buf[i - 2] == c'\n' and buf[i - 3] == c'\r':
            return <Py_ssize_t>(i + 1)
        if i >= 1 and buf[i - 1] == c'\n':
            return -400
        i += 1
    return 0

cdef inline bint fl_is_h2_preface(const char *buf, uint32_t n) noexcept nogil:
    # RFC 9113 3.4: an HTTP/2 client with prior knowledge starts with this line
    return n >= 16 and buf[0] == c'P' and memcmp(buf, b"PRI * HTTP/2.0\r\n", 16) == 0


cdef int fl_parse_head(const char *buf, uint32_t n, fl_request *req, const fl_limits *lim) noexcept nogil:
    """Parses the complete head buf[0:n) (n from fl_find_head_end) into req.
    Returns 0, or the HTTP status to answer with: 400, 414, 431, 501 or 505."""
    cdef uint32_t i = 0, s, ve
    cdef int rc, hosts = 0, codings = 0
    cdef Py_ssize_t j
    cdef unsigned char c
    cdef fl_header *h
    cdef const unsigned char *target_char = &fl_target_strict[0]
    if lim.lenient_targets:
        target_char = &fl_target_lenient[0]
    req.flags = 0
    req.num_headers = 0
    req.content_length = -1
    req.head_len = n
    req.query.off = 0
    req.query.len = 0
    req.authority.off = 0
    req.authority.len = 0

    # request-line = method SP request-target SP HTTP-version CRLF
    while fl_tchar[<unsigned char>buf[i]]:
        i += 1
    if i == 0 or buf[i] != c' ':
        return 400
    req.method.off = 0
    req.method.len = i
    if i == 3 and memcmp(buf, b"GET", 3) == 0:
        req.flags |= FL_REQ_GET
    elif i == 4 and memcmp(buf, b"HEAD", 4) == 0:
        req.flags |= FL_REQ_HEAD
    i += 1
    s = i
    while True:
        while target_char[<unsigned char>buf[i]]:
            i += 1
        if buf[i] != c'%':
            break
        # pct-encoded = "%" HEXDIG HEXDIG (RFC 3986 2.1); a CR stops the check in time
        if not (fl_hex[<unsigned char>buf[i + 1]] and fl_hex[<unsigned char>buf[i + 2]]):
            return 400
        i += 3
    if i == s or buf[i] != c' ':
        return 400  # also a fragment, a byte outside the URI grammar, a control character
    req.target.off = s
    req.target.len = i - s
    i += 1
    if n - i < 10 or memcmp(buf + i, b"HTTP/", 5) != 0 or buf[i + 8] != c'\r' or buf[i + 9] != c'\n':
        return 414 if i > lim.request_line else 400
    if not (c'0' <= buf[i + 5] <= c'9' and buf[i + 6] == c'.' and c'0' <= buf[i + 7] <= c'9'):
        return 400
    if buf[i + 5] != c'1':
        return 400 if fl_is_h2_preface(buf, n) else 505
    req.minor = buf[i + 7] - c'0'
    i += 10
    if i - 2 > lim.request_line:
        return 414
    rc = fl_parse_target(buf, req)
    if rc:
        return rc
    if req.minor >= 1:
        req.flags |= FL_REQ_KEEP_ALIVE
    else:
        req.flags |= FL_REQ_HTTP10

    # *( field-line CRLF ) CRLF
    while True:
        if buf[i] == c'\r':
            if buf[i + 1] == c'\n' and i + 2 == n:
                break
            return 400
        s = i
        while fl_tchar[<unsigned char>buf[i]]:
            i += 1
        if i == s or buf[i] != c':':
            return 400  # also obs-fold (a line starting with SP/HTAB) and space before ':'
        if <uint32_t>req.num_headers >= lim.fields:
            return 431  # lim.fields <= FL_MAX_HEADERS (limits_from), the array's size
        h = &req.headers[req.num_headers]
        h.name.off = s
        h.name.len = i - s
        i += 1
        while fl_is_ows(buf[i]):
            i += 1
        h.value.off = i
        if fl_span_eq_lower(buf, h.name, b"host", 4):
            # Host = uri-host [ ":" port ] (RFC 9112 3.2: an invalid one gets 400). Scanned
            # instead of the generic value loop, so checking it costs next to nothing.
            hosts += 1
            j = fl_scan_host(buf, i, False)
            if j < 0:
                return 400
            i = <uint32_t>j
            while fl_is_ows(buf[i]):
                i += 1
        else:
            while fl_vchar[<unsigned char>buf[i]]:
                i += 1
        if buf[i] != c'\r':
            return 400  # NUL, bare LF and other controls; in Host, any byte not of its grammar
        if buf[i + 1] != c'\n':
            return 400  # bare CR
        ve = i
        while ve > h.value.off and fl_is_ows(buf[ve - 1]):
            ve -= 1
        h.value.len = ve - h.value.off
        i += 2
        if i - s > lim.field_size:
            return 431
        req.num_headers += 1

        if h.name.len == 4:
            pass  # Host (done above) or a name none of the below can be
        elif fl_span_eq_lower(buf, h.name, b"content-length", 14):
            rc = fl_parse_content_length(buf, h.value, &req.content_length)
            if rc:
                return rc
        elif fl_span_eq_lower(buf, h.name, b"transfer-encoding", 17):
            rc = fl_parse_transfer_encoding(buf, h.value, req)
            if rc < 0:
                return -rc
            if rc == 0:
                return 400  # no coding at all: chunked is not the final one (RFC 9112 6.3)
            codings += rc
        elif fl_span_eq_lower(buf, h.name, b"connection", 10):
            fl_parse_connection(buf, h.value, req)
        elif fl_span_eq_lower(buf, h.name, b"expect", 6):
            if fl_span_eq_lower(buf, h.value, b"100-continue", 12):
                req.flags |= FL_REQ_EXPECT_CONTINUE
        elif fl_span_eq_lower(buf, h.name, b"upgrade", 7):
            req.flags |= FL_REQ_UPGRADE  # ws_handshake.pyx checks the rest, if WebSockets are served

    if codings:
        # RFC 9112 6.1: Transfer-Encoding with Content-Length is a smuggling attempt, and a
        # 1.0 message with it is faulty; both are rejected and the connection closed.
        if codings > 1:
            return 501  # chunked twice
        if req.content_length >= 0 or req.minor == 0:
            return 400
    if hosts > 1 or (req.minor >= 1 and hosts == 0):
        return 400  # RFC 9112 3.2: exactly one Host in HTTP/1.1
    if req.minor == 0 and (req.flags & FL_REQ_CONN_KEEP_ALIVE) and not (req.flags & FL_REQ_CONN_CLOSE):
        req.flags |= FL_REQ_KEEP_ALIVE
    return 0


cdef Py_ssize_t fl_frame_head(const char *p, uint32_t avail, uint32_t *scanned, fl_request *req,
                              const fl_limits *lim) noexcept nogil:
    """Frames and parses the request head at p, of which avail bytes have arrived and scanned[0]
    were searched by an earlier call (updated here). Returns the head length once complete and
    valid, 0 while incomplete and within limits, or -status (400, 413, 414, 431, 501, 505)."""
    cdef Py_ssize_t end = fl_find_head_end(p, avail, scanned[0])
    cdef int rc
    if end == 0:
        scanned[0] = avail
        # Not HTTP/1 at all, so no head will ever end: a TLS ClientHello (first byte 0x16),
        # any other binary first byte, or an HTTP/2 preface. Answer now, not at the header
        # timeout. A lone CR may be the start of an empty line before the request-line.
        if avail and not fl_tchar[<unsigned char>p[0]] and p[0] != c'\r':
            return -400
        if fl_is_h2_preface(p, avail):
            return -400
        # request_line <= FL_MAX_HEAD_BYTES: the sum cannot wrap
        if avail > lim.request_line + 2 and memchr(p, c'\n', lim.request_line + 2) == NULL:
            return -414
        if avail > lim.header_bytes:
            return -431
        return 0
    if end < 0:
        return end
    if end > lim.header_bytes:
        return -431
    # SAFETY: end <= header_bytes <= FL_MAX_HEAD_BYTES, so it fits the 32-bit span offsets.
    rc = fl_parse_head(p, <uint32_t>end, req, lim)
    if rc == 0 and req.content_length > lim.body_bytes:
        rc = 413
    return -rc if rc else end

cdef fl_limits limits_from(dict overrides) except *:
    """The C limits for DEFAULT_LIMITS updated with overrides; ValueError names the first one
    out of its range (each has a maximum, so that no length arithmetic can overflow)."""
    cdef fl_limits lim
    values = dict(DEFAULT_LIMITS, **(overrides or {}))
    for name, top in (("request_line", MAX_HEAD_BYTES), ("header_bytes", MAX_HEAD_BYTES),
                      ("field_size", MAX_HEAD_BYTES), ("fields", MAX_HEADERS),
                      ("body_bytes", MAX_BODY_BYTES)):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise ValueError(f"limits[{name!r}] must be an integer in 0..{top}, not {value!r}")
    lim.request_line = values["request_line"]
    lim.header_bytes = values["header_bytes"]
    lim.field_size = values["field_size"]
    lim.fields = values["fields"]
    lim.body_bytes = values["body_bytes"]
    lim.lenient_targets = bool(values["lenient_targets"])
    return lim


cdef object head_result(bytes data, Py_ssize_t end, fl_request *req):
    if end == 0:
        return None
    if end < 0:
        return <int>-end
    span = lambda fl_span s: data[s.off:s.off + s.len].decode("latin-1")
    return {
        "method": span(req.method), "target": span(req.target), "path": span(req.path),
        "query": span(req.query), "version": (1, req.minor), "head_len": req.head_len,
        "authority": span(req.authority) if req.authority.len else None,
        "content_length": req.content_length if req.content_length >= 0 else None,
        "keep_alive": bool(req.flags & FL_REQ_KEEP_ALIVE), "chunked": bool(req.flags & FL_REQ_CHUNKED),
        "headers": [(span(req.headers[i].name), span(req.headers[i].value)) for i in range(req.num_headers)],
    }


def parse_head(bytes data, dict limits=None):
    """Parses the request head at the start of data, as a connection would (for tests and
    tools). Returns None while incomplete, the HTTP status (int) that rejects it, or a dict."""
    return HeadParser(limits).feed(data)


cdef class HeadParser:
    """Feeds a request head in pieces through the same incremental framing a connection uses
    (each feed scans only new bytes). feed() returns what parse_head() would."""

    cdef fl_request req
    cdef fl_limits lim
    cdef uint32_t scanned
    cdef bytes data

    def __init__(self, dict limits=None):
        self.lim = limits_from(limits)
        self.scanned = 0
        self.data = b""

    def feed(self, bytes piece):
        self.data += piece
        cdef const char *p = self.data
        # A head is at most header_bytes <= FL_MAX_HEAD_BYTES: framing more than one byte past
        # that answers 431 just the same, so the length fits 32 bits without changing a result.
        cdef uint32_t avail = <uint32_t>min(len(self.data), FL_MAX_HEAD_BYTES + 1)
        cdef Py_ssize_t end = fl_frame_head(p, avail, &self.scanned, &self.req, &self.lim)
        return head_result(self.data, end, &self.req)
