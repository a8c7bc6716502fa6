# Field values and the request-target, for the head parser (http.pyx): Content-Length,
# Transfer-Encoding and Connection values; the request-target's forms and the authority (Host).
# Each is strict in the way RFC 9110 / 9112 / 3986 ask, without the GIL, and returns 0 or the
# status the request is answered with (see http.pyx's theory of operation).

from libc.stdint cimport INT64_MAX
from libc.string cimport memcmp


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
