# The HTTP/1.x response parser (see response.pxd). One call of fb_resp_step consumes bytes
# from the buffer's head until a response is complete, more bytes are needed, or the bytes
# are not HTTP. Bodies are skipped where they stand: nothing is copied.
#
# Lengths from the wire (Content-Length, chunk sizes) are kept in int64 and checked against
# INT64_MAX while they are parsed; indices into the buffer are size_t. Nothing is narrowed to
# 32 bits, so a 5 GiB body is counted to its last byte.

from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.string cimport memchr, memcmp

from fastloop.core cimport buf, scan


cdef inline bint fb_ieq(const char *p, const char *lower, size_t n) noexcept nogil:
    """p[0..n) equals lower (lowercase ASCII), ignoring case."""
    cdef size_t i
    cdef char ch
    for i in range(n):
        ch = p[i]
        if 65 <= ch <= 90:
            ch = ch + 32
        if ch != lower[i]:
            return False
    return True


cdef inline bint fb_icontains(const char *p, size_t n, const char *lower, size_t m) noexcept nogil:
    cdef size_t i
    if m > n:
        return False
    for i in range(n - m + 1):
        if fb_ieq(p + i, lower, m):
            return True
    return False


cdef inline ssize_t fb_line_end(const char *p, size_t n) noexcept nogil:
    """Length of the line at p[0..n) through its CRLF; 0 when its end has not come yet (and
    it is within FB_MAX_LINE so far); -1 when it ends in a bare LF or is too long."""
    cdef const char *nl = <const char *>memchr(p, 10, n)
    if nl == NULL:
        return -1 if n > FB_MAX_LINE else 0
    if nl == p or (nl - 1)[0] != 13:
        return -1
    return (nl - p) + 1


cdef inline int fb_parse_length(const char *v, const char *vend, int64_t *out) noexcept nogil:
    """A Content-Length value (1*DIGIT, optional trailing blanks) into *out: 0, or -1 when it
    is malformed or beyond INT64_MAX."""
    cdef int64_t n = 0
    cdef int d
    if v == vend:
        return -1
    while v < vend and 48 <= v[0] <= 57:
        d = v[0] - 48
        if n > (INT64_MAX - d) // 10:
            return -1
        n = n * 10 + d
        v += 1
    while v < vend and (v[0] == 32 or v[0] == 9):
        v += 1
    if v != vend:
        return -1
    out[0] = n
    return 0


cdef void fb_resp_reset(fb_resp *r) noexcept nogil:
    """A new connection: no response under way, no close announced."""
    r.state = FB_R_HEAD
    r.status = 0
    r.close = False
    r.body_left = 0
    r.scanned = 0


cdef bint fb_resp_ends_at_eof(const fb_resp *r) noexcept nogil:
    """True when the server's close completes the response under way (a body without a
    length)."""
    return r.state == FB_R_UNTIL_EOF


cdef int fb_parse_head(fb_resp *r, const char *p, size_t n, bint head_only) noexcept nogil:
    """Reads the status line and the headers that frame the body from the complete head
    p[0..n) (through its CRLF CRLF). Sets state (FB_R_HEAD again after an interim 1xx).
    Returns 0, or -1 if malformed."""
    cdef const char *stop = p + n - 2  # includes the last header line's CRLF
    cdef const char *line
    cdef const char *nl
    cdef const char *colon
    cdef const char *v
    cdef const char *vend
    cdef size_t nlen
    cdef int status, i
    cdef int64_t length = -1
    cdef bint chunked = False, close_after
    if n < 16 or memcmp(p, b"HTTP/1.", 7) != 0 or p[8] != 32:
        return -1
    status = 0
    for i in range(9, 12):
        if not 48 <= p[i] <= 57:
            return -1
        status = status * 10 + (p[i] - 48)
    close_after = p[7] == 48  # HTTP/1.0 closes unless it says keep-alive
    line = <const char *>memchr(p, 10, stop - p) + 1
    while line < stop:
        nl = <const char *>memchr(line, 10, stop - line)
        if nl == NULL:
            break
        colon = <const char *>memchr(line, 58, nl - line)
        if colon != NULL:
            nlen = colon - line
            v = colon + 1
            vend = nl - 1 if (nl - 1)[0] == 13 else nl
            while v < vend and (v[0] == 32 or v[0] == 9):
                v += 1
            if nlen == 14 and fb_ieq(line, b"content-length", 14):
                if fb_parse_length(v, vend, &length) < 0:
                    return -1
            elif nlen == 17 and fb_ieq(line, b"transfer-encoding", 17):
                chunked = fb_icontains(v, vend - v, b"chunked", 7)
            elif nlen == 10 and fb_ieq(line, b"connection", 10):
                if fb_icontains(v, vend - v, b"close", 5):
                    close_after = True
                elif fb_icontains(v, vend - v, b"keep-alive", 10):
                    close_after = False
        line = nl + 1
    r.status = status
    if 100 <= status < 200 and status != 101:
        r.state = FB_R_HEAD  # interim (100 Continue, 103 Early Hints): the real one follows
        return 0
    if close_after:
        r.close = True
    if head_only or status == 204 or status == 304 or status == 101:
        r.body_left = 0
        r.state = FB_R_BODY
    elif chunked:
        r.state = FB_R_CHUNK_SIZE
    elif length >= 0:
        r.body_left = length
        r.state = FB_R_BODY
    else:
        r.state = FB_R_UNTIL_EOF
        r.close = True
    return 0


cdef inline bint fb_skip(fb_resp *r, buf.fl_buf *b) noexcept nogil:
    """Skips what arrived of the body (or chunk) r is in: True while more of it is to come."""
    cdef size_t take = buf.fl_buf_len(b)
    if <uint64_t>take > <uint64_t>r.body_left:
        take = <size_t>r.body_left
    buf.fl_buf_consume(b, take)
    r.body_left -= <int64_t>take
    return r.body_left > 0


cdef int fb_resp_step(fb_resp *r, buf.fl_buf *b, bint head_only) noexcept nogil:
    """Consumes b's live bytes until one response is complete (FB_P_DONE), all of them are
    used (FB_P_MORE), or they are not a valid response (FB_P_BAD). head_only: the request was
    HEAD, so no response has a body."""
    cdef ssize_t n
    cdef int digits
    cdef int64_t size
    cdef const char *p
    cdef char ch
    while True:
        p = buf.fl_buf_head(b)
        if r.state == FB_R_HEAD:
            n = scan.fl_scan_head_end(p, buf.fl_buf_len(b), r.scanned)
            if n == 0:
                r.scanned = buf.fl_buf_len(b)
                return FB_P_BAD if r.scanned > FB_MAX_HEAD else FB_P_MORE
            if n < 0 or fb_parse_head(r, p, <size_t>n, head_only) < 0:
                return FB_P_BAD
            buf.fl_buf_consume(b, <size_t>n)
            r.scanned = 0
        elif r.state == FB_R_BODY:
            if fb_skip(r, b):
                return FB_P_MORE
            r.state = FB_R_HEAD
            return FB_P_DONE
        elif r.state == FB_R_CHUNK_SIZE:
            n = fb_line_end(p, buf.fl_buf_len(b))
            if n <= 0:
                return FB_P_MORE if n == 0 else FB_P_BAD
            digits = scan.fl_scan_hex(p, <size_t>n - 2, &size)
            if digits <= 0:
                return FB_P_BAD  # no size, or one past INT64_MAX
            ch = p[digits]
            if digits != n - 2 and ch != 59 and ch != 32 and ch != 9:
                return FB_P_BAD  # only ";ext" (after optional blanks) may follow the size
            buf.fl_buf_consume(b, <size_t>n)
            if size == 0:
                r.state = FB_R_TRAILER
            else:
                r.body_left = size
                r.state = FB_R_CHUNK_DATA
        elif r.state == FB_R_CHUNK_DATA:
            if fb_skip(r, b):
                return FB_P_MORE
            r.state = FB_R_CHUNK_END
        elif r.state == FB_R_CHUNK_END:
            if buf.fl_buf_len(b) < 2:
                return FB_P_MORE
            if p[0] != 13 or p[1] != 10:
                return FB_P_BAD
            buf.fl_buf_consume(b, 2)
            r.state = FB_R_CHUNK_SIZE
        elif r.state == FB_R_TRAILER:
            n = fb_line_end(p, buf.fl_buf_len(b))
            if n <= 0:
                return FB_P_MORE if n == 0 else FB_P_BAD
            buf.fl_buf_consume(b, <size_t>n)
            if n == 2:  # the empty line ends the trailer and the response
                r.state = FB_R_HEAD
                return FB_P_DONE
        else:  # FB_R_UNTIL_EOF: the body is everything up to the server's close
            buf.fl_buf_consume(b, buf.fl_buf_len(b))
            return FB_P_MORE
