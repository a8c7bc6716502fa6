# The chunked body decoder (RFC 9112 7.1), in place in the connection's buffer, without the
# GIL: fl_decode_chunked is fed the bytes as they arrive and resumes where it stopped
# (fl_chunked keeps its state), so a body trickled byte by byte costs O(n). Its view,
# ChunkedDecoder, feeds it from tests and tools.

from libc.string cimport memchr


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
