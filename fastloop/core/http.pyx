# Request-head parsing in the connection's buffer, without the GIL.
#
# Theory of operation. The connection code first finds the end of a head (fl_find_head_end),
# scanning only bytes it has not scanned before, so a client that trickles a head byte by
# byte costs O(n) in total, not O(n^2) (picohttpparser's last_len). Only a complete head is
# parsed (fl_parse_head), in one pass that can never run past it: every loop stops at the CR
# of the final CRLF CRLF. The parser is strict where RFC 9112 asks for it (token method and
# field names, no whitespace before a colon, CRLF only, no obs-fold, no control characters)
# and answers with the status the caller should send: 400, 414, 431, 501 or 505.

from libc.string cimport memchr, memcmp


DEFAULT_LIMITS = {
    "request_line": 4094,         # gunicorn limit_request_line (nginx allows 8 KiB)
    "header_bytes": 65536,
    "field_size": 8190,           # gunicorn limit_request_field_size
    "fields": 100,                # gunicorn limit_request_fields
    "body_bytes": 16 * 1024 * 1024,
}


MAX_HEADERS = FL_MAX_HEADERS  # the most header fields limits["fields"] may allow

cdef unsigned char fl_tchar[256]
cdef unsigned char fl_vchar[256]      # field-value bytes: HTAB, SP, VCHAR, obs-text
cdef unsigned char fl_target_char[256]  # request-target bytes: no SP, CTL or DEL


cdef void fl_init_tables() noexcept:
    # RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
    #                         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    cdef const char *extra = b"!#$%&'*+-.^_`|~"
    cdef int c
    for c in range(256):
        fl_tchar[c] = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
    while extra[0]:
        fl_tchar[<unsigned char>extra[0]] = 1
        extra += 1
    # One table lookup per byte instead of a chain of comparisons: parsing is most of the cost
    # of a small request.
    for c in range(256):
        fl_vchar[c] = c == 9 or (32 <= c <= 126) or c >= 128
        fl_target_char[c] = (33 <= c <= 126) or c >= 128


fl_init_tables()


cdef inline bint fl_is_ows(char c) noexcept nogil:
    return c == c' ' or c == c'\t'


cdef bint fl_span_eq_lower(const char *buf, fl_span s, const char *lit, uint32_t n) noexcept nogil:
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


cdef int fl_parse_content_length(const char *buf, fl_span v, int64_t *out) noexcept nogil:
    # 1*DIGIT only: no sign, no spaces, no list; 18 digits cannot overflow int64.
    if v.len == 0 or v.len > 18:
        return 400
    cdef int64_t n = 0
    cdef uint32_t i
    cdef char c
    for i in range(v.len):
        c = buf[v.off + i]
        if c < c'0' or c > c'9':
            return 400
        n = n * 10 + (c - c'0')
    if out[0] >= 0 and out[0] != n:
        return 400  # repeated with a different value: the framing is ambiguous (smuggling)
    out[0] = n
    return 0


cdef void fl_parse_connection(const char *buf, fl_span v, fl_request *req) noexcept nogil:
    # Connection is a comma-separated token list; only "close" and "keep-alive" matter here.
    cdef uint32_t i = v.off, end = v.off + v.len, s
    cdef fl_span tok
    while i < end:
        while i < end and (fl_is_ows(buf[i]) or buf[i] == c','):
            i += 1
        s = i
        while i < end and buf[i] != c',' and not fl_is_ows(buf[i]):
            i += 1
        tok.off = s
        tok.len = i - s
        if fl_span_eq_lower(buf, tok, b"close", 5):
            req.flags &= ~FL_REQ_KEEP_ALIVE
            req.flags |= FL_REQ_CONN_CLOSE
        elif fl_span_eq_lower(buf, tok, b"keep-alive", 10):
            req.flags |= FL_REQ_CONN_KEEP_ALIVE


cdef int fl_parse_target(const char *buf, fl_request *req) noexcept nogil:
    # Sets path and query. RFC 9112 3.2: origin-form, absolute-form, authority-form (CONNECT
    # only) and asterisk-form (OPTIONS only).
    cdef fl_span t = req.target
    cdef uint32_t i = t.off, end = t.off + t.len, s
    cdef fl_span m = req.method
    if buf[i] == c'*':
        if t.len != 1 or not (m.len == 7 and memcmp(buf + m.off, b"OPTIONS", 7) == 0):
            return 400
        req.path = t
        return 0
    if m.len == 7 and memcmp(buf + m.off, b"CONNECT", 7) == 0:
        if buf[i] == c'/':
            return 400
        req.path = t
        return 0
    if buf[i] != c'/':
        # absolute-form: scheme "://" authority [path]
        s = i
        while i < end and ((c'a' <= (buf[i] | 0x20) <= c'z') or (i > s and (c'0' <= buf[i] <= c'9' or buf[i] == c'+' or buf[i] == c'-' or buf[i] == c'.'))):
            i += 1
        if i == s or end - i < 4 or memcmp(buf + i, b"://", 3) != 0:
            return 400
        i += 3
        while i < end and buf[i] != c'/' and buf[i] != c'?':
            i += 1
    s = i
    while i < end and buf[i] != c'?':
        i += 1
    req.path.off = s
    req.path.len = i - s
    if i < end:
        req.query.off = i + 1
        req.query.len = end - i - 1
    return 0


cdef int fl_parse_head(const char *buf, uint32_t n, fl_request *req, const fl_limits *lim) noexcept nogil:
    """Parses the complete head buf[0:n) (n from fl_find_head_end) into req.
    Returns 0, or the HTTP status to answer with: 400, 414, 431, 501 or 505."""
    cdef uint32_t i = 0, s, ve
    cdef int rc, hosts = 0, codings = 0
    cdef unsigned char c
    cdef fl_header *h
    req.flags = 0
    req.num_headers = 0
    req.content_length = -1
    req.head_len = n
    req.query.off = 0
    req.query.len = 0

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
    while fl_target_char[<unsigned char>buf[i]]:
        i += 1
    if i == s or buf[i] != c' ':
        return 400
    req.target.off = s
    req.target.len = i - s
    i += 1
    if n - i < 10 or memcmp(buf + i, b"HTTP/", 5) != 0 or buf[i + 8] != c'\r' or buf[i + 9] != c'\n':
        return 414 if i > lim.request_line else 400
    if not (c'0' <= buf[i + 5] <= c'9' and buf[i + 6] == c'.' and c'0' <= buf[i + 7] <= c'9'):
        return 400
    if buf[i + 5] != c'1':
        return 505
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
        if <uint32_t>req.num_headers >= lim.fields or req.num_headers >= FL_MAX_HEADERS:
            return 431
        h = &req.headers[req.num_headers]
        h.name.off = s
        h.name.len = i - s
        i += 1
        while fl_is_ows(buf[i]):
            i += 1
        h.value.off = i
        while fl_vchar[<unsigned char>buf[i]]:
            i += 1
        if buf[i] != c'\r':
            return 400  # NUL, bare LF and other controls
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

        if fl_span_eq_lower(buf, h.name, b"content-length", 14):
            rc = fl_parse_content_length(buf, h.value, &req.content_length)
            if rc:
                return rc
        elif fl_span_eq_lower(buf, h.name, b"transfer-encoding", 17):
            codings += 1
            if fl_span_eq_lower(buf, h.value, b"chunked", 7):
                req.flags |= FL_REQ_CHUNKED
            else:
                return 501
        elif fl_span_eq_lower(buf, h.name, b"connection", 10):
            fl_parse_connection(buf, h.value, req)
        elif fl_span_eq_lower(buf, h.name, b"host", 4):
            hosts += 1
        elif fl_span_eq_lower(buf, h.name, b"expect", 6):
            if fl_span_eq_lower(buf, h.value, b"100-continue", 12):
                req.flags |= FL_REQ_EXPECT_CONTINUE

    if codings:
        # RFC 9112 6.1: Transfer-Encoding with Content-Length is a smuggling attempt, and a
        # 1.0 message with it is faulty; both are rejected and the connection closed.
        if codings > 1:
            return 501
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
        if avail > lim.request_line + 2 and memchr(p, c'\n', lim.request_line + 2) == NULL:
            return -414
        if avail > lim.header_bytes:
            return -431
        return 0
    if end < 0:
        return end
    if end > lim.header_bytes:
        return -431
    rc = fl_parse_head(p, <uint32_t>end, req, lim)
    if rc == 0 and req.content_length > lim.body_bytes:
        rc = 413
    return -rc if rc else end


cdef enum:
    FL_CHUNK_LINE_MAX = 4096      # a chunk-size line with its extensions


cdef void fl_chunked_start(fl_chunked *st, uint32_t head_len) noexcept nogil:
    st.state = FL_CHUNK_SIZE
    st.left = 0
    st.in_ = st.out = st.head_len = head_len
    st.trailer_bytes = 0


cdef int fl_chunked_line(char *p, uint32_t avail, uint32_t start, uint32_t *end) noexcept nogil:
    """Finds the CRLF ending the line at start: 1 and end set past it, 0 if not yet, -400."""
    cdef const char *nl = <const char *>memchr(p + start, c'\n', avail - start)
    cdef uint32_t i
    if nl == NULL:
        return -400 if avail - start > FL_CHUNK_LINE_MAX else 0
    i = <uint32_t>(nl - p)
    if i == start or p[i - 1] != c'\r':
        return -400  # bare LF
    if i - start > FL_CHUNK_LINE_MAX:
        return -400  # however it arrived, whole or in pieces
    end[0] = i + 1
    return 1


cdef int fl_decode_chunked(char *p, uint32_t avail, fl_chunked *st, int64_t max_body) noexcept nogil:
    """Decodes the chunked body of the request at p, of which avail bytes have arrived, from
    where st left off (RFC 9112 7.1). Returns 1 when the message is complete (its raw length is
    st.in_, its body p[head_len:st.out)), 0 while incomplete, or -400 / -413."""
    cdef uint32_t end, i, n
    cdef uint64_t size
    cdef int rc, digits
    cdef unsigned char c
    while True:
        if st.state == FL_CHUNK_SIZE:
            rc = fl_chunked_line(p, avail, st.in_, &end)
            if rc <= 0:
                return rc
            i = st.in_
            size = 0
            digits = 0
            while True:
                c = <unsigned char>p[i]
                if c'0' <= c <= c'9':
                    c -= c'0'
                elif c'a' <= (c | 0x20) <= c'f':
                    c = (c | 0x20) - c'a' + 10
                else:
                    break
                digits += 1
                if digits > 15:
                    return -400  # chunk-size overflow
                size = size * 16 + c
                i += 1
            if digits == 0:
                return -400
            # chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): skipped, but it may
            # hold no control character but HTAB, and must start with ';'.
            while fl_is_ows(p[i]):
                i += 1
            if p[i] != c'\r':
                if p[i] != c';':
                    return -400
                while i < end - 2:
                    c = <unsigned char>p[i]
                    if (c < 0x20 and c != c'\t') or c == 0x7f:
                        return -400
                    i += 1
            if i != end - 2:
                return -400
            st.in_ = end
            if size == 0:
                st.state = FL_CHUNK_TRAILERS
                continue
            if <int64_t>(st.out - st.head_len) + <int64_t>size > max_body:
                return -413
            st.left = size
            st.state = FL_CHUNK_DATA
        elif st.state == FL_CHUNK_DATA:
            n = avail - st.in_
            if n > st.left:
                n = <uint32_t>st.left
            if n == 0:
                return 0
            # SAFETY: out <= in_ always (chunk framing only shrinks), both inside p[0:avail).
            if st.out != st.in_:
                memmove(p + st.out, p + st.in_, n)
            st.out += n
            st.in_ += n
            st.left -= n
            if st.left == 0:
                st.state = FL_CHUNK_DATA_END
        elif st.state == FL_CHUNK_DATA_END:
            if avail - st.in_ < 2:
                return 0
            if p[st.in_] != c'\r' or p[st.in_ + 1] != c'\n':
                return -400
            st.in_ += 2
            st.state = FL_CHUNK_SIZE
        else:  # FL_CHUNK_TRAILERS: fields are read and dropped, the empty line ends the body
            rc = fl_chunked_line(p, avail, st.in_, &end)
            if rc <= 0:
                return rc
            if end - st.in_ == 2:
                st.in_ = end
                return 1
            for i in range(st.in_, end - 2):
                c = <unsigned char>p[i]
                if (c < 0x20 and c != c'\t') or c == 0x7f:
                    return -400
            st.trailer_bytes += end - st.in_
            if st.trailer_bytes > FL_CHUNK_LINE_MAX * 4:
                return -431
            st.in_ = end


cdef fl_limits limits_from(dict overrides) except *:
    cdef fl_limits lim
    values = dict(DEFAULT_LIMITS, **(overrides or {}))
    lim.request_line = values["request_line"]
    lim.header_bytes = values["header_bytes"]
    lim.field_size = values["field_size"]
    lim.fields = min(<int>values["fields"], <int>FL_MAX_HEADERS)
    lim.body_bytes = values["body_bytes"]
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
        "content_length": req.content_length if req.content_length >= 0 else None,
        "keep_alive": bool(req.flags & FL_REQ_KEEP_ALIVE),
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
        cdef Py_ssize_t end = fl_frame_head(p, <uint32_t>len(self.data), &self.scanned, &self.req, &self.lim)
        return head_result(self.data, end, &self.req)


cdef class ChunkedDecoder:
    """Feeds a chunked body in pieces through the decoder a connection uses (for tests and
    tools). feed() returns None while incomplete, the HTTP status (int) that rejects it, or
    (body, raw length consumed)."""

    cdef fl_chunked st
    cdef bytearray buf
    cdef int64_t max_body

    def __init__(self, int64_t max_body=DEFAULT_LIMITS["body_bytes"]):
        fl_chunked_start(&self.st, 0)
        self.buf = bytearray()
        self.max_body = max_body

    def feed(self, bytes piece):
        self.buf += piece
        cdef char *p = self.buf
        cdef int rc = fl_decode_chunked(p, <uint32_t>len(self.buf), &self.st, self.max_body)
        if rc < 0:
            return -rc
        if rc == 0:
            return None
        return bytes(self.buf[:self.st.out]), self.st.in_
