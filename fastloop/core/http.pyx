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

from libc.stdint cimport INT64_MAX
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


cdef int fl_parse_content_length(const char *buf, fl_span v, int64_t *out) noexcept nogil:
    # 1*DIGIT only: no sign, no spaces, no list. Leading zeros are valid and any number of
    # digits must parse without overflow (RFC 9110 8.6): past 10^18 the value saturates at
    # INT64_MAX, beyond every body limit (MAX_BODY_BYTES), so the caller answers 413.
    if v.len == 0:
        return 400
    cdef int64_t n = 0
    cdef uint32_t i
    cdef char c
    for i in range(v.len):
        c = buf[v.off + i]
        if c < c'0' or c > c'9':
            return 400
        if n < 100000000000000000LL:  # 10^17: n * 10 + 9 stays below 10^18
            n = n * 10 + (c - c'0')
        else:
            n = INT64_MAX
    if out[0] >= 0 and out[0] != n:
        return 400  # repeated with a different value: the framing is ambiguous (smuggling)
    out[0] = n
    return 0


cdef int fl_parse_transfer_encoding(const char *buf, fl_span v, fl_request *req) noexcept nogil:
    # Transfer-Encoding = #transfer-coding; empty list elements are ignored (RFC 9110
    # 5.6.1.2: "chunked," and ", chunked" are one coding). Returns the number of codings, or
    # -501 for any coding but chunked (RFC 9112 6.1), which is the only one served.
    cdef uint32_t i = v.off, end = v.off + v.len, s, e
    cdef int n = 0
    cdef fl_span tok
    while i < end:
        while i < end and (fl_is_ows(buf[i]) or buf[i] == c','):
            i += 1
        if i == end:
            break
        s = i
        while i < end and buf[i] != c',':
            i += 1
        e = i
        while fl_is_ows(buf[e - 1]):
            e -= 1
        tok.off = s
        tok.len = e - s
        if not fl_span_eq_lower(buf, tok, b"chunked", 7):
            return -501
        req.flags |= FL_REQ_CHUNKED
        n += 1
    return n


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


cdef Py_ssize_t fl_scan_ipv4(const char *buf, uint32_t i) noexcept nogil:
    """IPv4address (RFC 3986 3.2.2: four dec-octets, no leading zero) at buf[i]: the index
    after it, or -1."""
    cdef int k, n, v
    for k in range(4):
        if k:
            if buf[i] != c'.':
                return -1
            i += 1
        n = v = 0
        while c'0' <= buf[i] <= c'9' and n < 4:
            v = v * 10 + (buf[i] - c'0')
            n += 1
            i += 1
        if n == 0 or n > 3 or v > 255 or (n > 1 and buf[i - n] == c'0'):
            return -1
    return i


cdef Py_ssize_t fl_scan_ip_literal(const char *buf, uint32_t i) noexcept nogil:
    """IP-literal = "[" ( IPv6address / IPvFuture ) "]" (RFC 3986 3.2.2), buf[i] at "[":
    the index after "]", or -1. No zone identifier (RFC 6874 is not part of HTTP's uri-host).
    Only the bytes of the grammar are consumed, so the scan ends at the CR or SP that ends a
    field line or a target, whatever it holds."""
    cdef int groups = 0, n
    cdef bint elided = False
    cdef uint32_t s
    cdef Py_ssize_t j
    i += 1
    if buf[i] == c'v' or buf[i] == c'V':
        # IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        s = i = i + 1
        while fl_hex[<unsigned char>buf[i]]:
            i += 1
        if i == s or buf[i] != c'.':
            return -1
        s = i = i + 1
        while fl_regname[<unsigned char>buf[i]] or buf[i] == c':':
            i += 1
        return i + 1 if i > s and buf[i] == c']' else -1
    if buf[i] == c':':
        if buf[i + 1] != c':':
            return -1
        elided = True
        i += 2
        if buf[i] == c']':
            return i + 1
    while True:
        # h16 = 1*4HEXDIG, or the ls32 dotted IPv4 tail
        s = i
        while fl_hex[<unsigned char>buf[i]]:
            i += 1
        n = i - s
        if buf[i] == c'.':
            j = fl_scan_ipv4(buf, s)
            if j < 0 or buf[j] != c']':
                return -1
            i = <uint32_t>j
            groups += 2
            break
        if n == 0 or n > 4:
            return -1
        groups += 1
        if buf[i] == c']':
            break
        if buf[i] != c':' or groups == 8:
            return -1
        i += 1
        if buf[i] == c':':
            if elided:
                return -1
            elided = True
            i += 1
            if buf[i] == c']':
                break
    if groups > 7 if elided else groups != 8:
        return -1
    return i + 1


cdef Py_ssize_t fl_scan_port(const char *buf, uint32_t i) noexcept nogil:
    """port = *DIGIT at buf[i], at most 65535 however many leading zeros: the index after it,
    or -1."""
    cdef int port = 0
    while buf[i] == c'0':
        i += 1
    while fl_digit[<unsigned char>buf[i]]:
        port = port * 10 + (buf[i] - c'0')
        i += 1
        if port > 65535:
            return -1
    return i


cdef Py_ssize_t fl_scan_host_slow(const char *buf, uint32_t i, bint need_host) noexcept nogil:
    """fl_scan_host for what it does not do inline: an IP-literal or %-escapes in the host."""
    cdef uint32_t s = i
    cdef Py_ssize_t j
    if buf[i] == c'[':
        j = fl_scan_ip_literal(buf, i)
        if j < 0:
            return -1
        i = <uint32_t>j
    else:
        while True:
            while fl_regname[<unsigned char>buf[i]]:
                i += 1
            if buf[i] != c'%':
                break
            if not (fl_hex[<unsigned char>buf[i + 1]] and fl_hex[<unsigned char>buf[i + 2]]):
                return -1
            i += 3
        if need_host and i == s:
            return -1
    if buf[i] != c':':
        return i
    return fl_scan_port(buf, i + 1)


cdef inline Py_ssize_t fl_scan_host(const char *buf, uint32_t i, bint need_host) noexcept nogil:
    """Scans uri-host [ ":" port ] at buf[i] (RFC 9110 4.2.1, 7.2; RFC 3986 3.2.2, 3.2.3): an
    IP-literal, or a reg-name (which covers IPv4address). Returns where it stops, for the
    caller to check what follows (OWS and CR in a Host field, "/" or "?" or the end in a
    target; anything else, such as the "@" of a userinfo, is an error), or -1 if what it read
    is malformed: an IP literal, a %-escape, a port above 65535, or (need_host) no host.
    It consumes only bytes of the grammar, so it stops at any CR or SP.
    Inline, it is as cheap as the field-value loop it replaces for Host: a plain name and a
    port of at most 5 digits starting below 6 need no more than one table lookup a byte."""
    cdef uint32_t s = i
    while fl_regname[<unsigned char>buf[i]]:
        i += 1
    if buf[i] == c'[' or buf[i] == c'%':
        return fl_scan_host_slow(buf, s, need_host)
    if need_host and i == s:
        return -1
    if buf[i] != c':':
        return i
    i += 1
    s = i
    while fl_digit[<unsigned char>buf[i]]:
        i += 1
    if i - s > 5 or (i - s == 5 and buf[s] >= c'6'):
        return fl_scan_port(buf, s)  # maybe above 65535, or leading zeros
    return i


cdef int fl_parse_target(const char *buf, fl_request *req) noexcept nogil:
    # Sets path, query and (absolute-form) authority. RFC 9112 3.2: origin-form,
    # absolute-form, authority-form (CONNECT only) and asterisk-form (OPTIONS only). The
    # target's bytes were checked by fl_parse_head already; here its structure is.
    cdef fl_span t = req.target
    cdef uint32_t i = t.off, end = t.off + t.len, s
    cdef Py_ssize_t j
    cdef fl_span m = req.method
    if buf[i] == c'*':
        if t.len != 1 or not (m.len == 7 and memcmp(buf + m.off, b"OPTIONS", 7) == 0):
            return 400
        req.path = t
        return 0
    if m.len == 7 and memcmp(buf + m.off, b"CONNECT", 7) == 0:
        # authority-form = uri-host ":" port (RFC 9110 9.3.6): the port is required
        j = fl_scan_host(buf, i, True)
        if j != end:
            return 400
        s = end
        while c'0' <= buf[s - 1] <= c'9':
            s -= 1
        if s == end or buf[s - 1] != c':':
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
        # RFC 9110 4.2.1: an http(s) URI with an empty host is invalid; 4.2.4: a userinfo
        # is an error (fl_scan_host stops at its "@").
        j = fl_scan_host(buf, i, True)
        if j < 0 or (j != end and buf[j] != c'/' and buf[j] != c'?'):
            return 400
        req.authority.off = i
        req.authority.len = <uint32_t>j - i
        i = <uint32_t>j
    s = i
    while i < end and buf[i] != c'?':
        i += 1
    req.path.off = s
    req.path.len = i - s
    if i < end:
        req.query.off = i + 1
        req.query.len = end - i - 1
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


cdef inline bint fl_qdtext(unsigned char c) noexcept nogil:
    # RFC 9110 5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
    return c == c'\t' or c == c' ' or c == 0x21 or (0x23 <= c <= 0x5b) or (0x5d <= c <= 0x7e) or c >= 0x80


cdef int fl_chunk_ext(const char *p, uint32_t i, uint32_t e) noexcept nogil:
    """Checks chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) in
    p[i:e), where p[e] is the CR ending the chunk-size line (RFC 9112 7.1.1): 0 or -400.
    Extensions are dropped, but only after checking them: whitespace before the CRLF, a ";"
    without a name or an unterminated quoted string are not in the grammar. Every loop stops
    at e, whose CR is no token, whitespace or quoted-string byte."""
    cdef uint32_t j
    cdef unsigned char c
    while True:
        j = i
        while fl_is_ows(p[j]):
            j += 1
        if j == e:
            return 0 if j == i else -400  # BWS comes before a ";" only, never before CRLF
        if p[j] != c';':
            return -400
        j += 1
        while fl_is_ows(p[j]):
            j += 1
        i = j
        while fl_tchar[<unsigned char>p[j]]:
            j += 1
        if j == i:
            return -400  # ";" without a name
        i = j
        while fl_is_ows(p[j]):
            j += 1
        if p[j] != c'=':
            continue  # i stays after the name: what follows is the next ";" or the end
        j += 1
        while fl_is_ows(p[j]):
            j += 1
        if p[j] == c'"':
            # quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
            j += 1
            while True:
                if j >= e:
                    return -400  # unterminated
                c = <unsigned char>p[j]
                if c == c'"':
                    j += 1
                    break
                if c == c'\\':
                    j += 1
                    if j >= e:
                        return -400
                    c = <unsigned char>p[j]
                    if not (c == c'\t' or 0x20 <= c <= 0x7e or c >= 0x80):
                        return -400
                elif not fl_qdtext(c):
                    return -400
                j += 1
        else:
            i = j
            while fl_tchar[<unsigned char>p[j]]:
                j += 1
            if j == i:
                return -400  # "=" without a value
        i = j


cdef int fl_decode_chunked(char *p, uint32_t avail, fl_chunked *st, int64_t max_body) noexcept nogil:
    """Decodes the chunked body of the request at p, of which avail bytes have arrived, from
    where st left off (RFC 9112 7.1). Returns 1 when the message is complete (its raw length is
    st.in_, its body p[head_len:st.out)), 0 while incomplete, or -400 / -413."""
    cdef uint32_t end, i, n, s
    cdef uint64_t size
    cdef int rc
    cdef uint32_t digits
    cdef unsigned char c
    while True:
        if st.state == FL_CHUNK_SIZE:
            rc = fl_chunked_line(p, avail, st.in_, &end)
            if rc <= 0:
                return rc
            i = st.in_
            # chunk-size = 1*HEXDIG. Leading zeros are valid, however many (the line limit
            # bounds them); 16 significant digits fill 64 bits, more cannot be a size below
            # any body limit: 413.
            while p[i] == c'0':
                i += 1
            digits = 1 if i > st.in_ else 0
            size = 0
            s = i
            while fl_hex[<unsigned char>p[i]]:
                size = size * 16 + (fl_hex[<unsigned char>p[i]] - 1)
                i += 1
                if i - s > 16:
                    return -413
            digits += i - s
            if digits == 0:
                return -400
            rc = fl_chunk_ext(p, i, end - 2)
            if rc < 0:
                return rc
            st.in_ = end
            if size == 0:
                st.state = FL_CHUNK_TRAILERS
                continue
            # In 64 bits without overflow: the body so far is within max_body already.
            if size > <uint64_t>(max_body - <int64_t>(st.out - st.head_len)):
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


cdef class ChunkedDecoder:
    """Feeds a chunked body in pieces through the decoder a connection uses (for tests and
    tools). feed() returns None while incomplete, the HTTP status (int) that rejects it, or
    (body, raw length consumed)."""

    cdef fl_chunked st
    cdef bytearray buf
    cdef int64_t max_body

    def __init__(self, int64_t max_body=DEFAULT_LIMITS["body_bytes"]):
        if not 0 <= max_body <= MAX_BODY_BYTES:
            raise ValueError(f"max_body must be in 0..{MAX_BODY_BYTES}, not {max_body}")
        fl_chunked_start(&self.st, 0)
        self.buf = bytearray()
        self.max_body = max_body

    def feed(self, bytes piece):
        self.buf += piece
        if len(self.buf) > 0xffffffff:
            raise ValueError("ChunkedDecoder keeps one buffer, of less than 4 GiB")
        cdef char *p = self.buf
        cdef int rc = fl_decode_chunked(p, <uint32_t>len(self.buf), &self.st, self.max_body)
        if rc < 0:
            return -rc
        if rc == 0:
            return None
        return bytes(self.buf[:self.st.out]), self.st.in_
