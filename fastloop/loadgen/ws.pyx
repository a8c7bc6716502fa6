# RFC 6455 for the load generator (see ws.pxd): nothing here does I/O, so each piece can be
# driven with bytes in tests; the loop owns the sockets and the timing.

from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

from fastloop.core cimport buf, scan, wskey


cdef uint64_t fb_rand(uint64_t *state) noexcept nogil:
    """xorshift64*: the masking keys and handshake nonces a client must not make predictable
    to intermediaries (section 10.3). Fast, not cryptographic; seeded from os.urandom."""
    cdef uint64_t x = state[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    state[0] = x
    return x * <uint64_t>0x2545F4914F6CDD1D


cdef void fb_ws_reset(fb_ws *w) noexcept nogil:
    w.phase = FB_WS_HANDSHAKE
    w.in_message = w.in_frame = w.fin = False
    w.left = 0
    w.scanned = 0
    w.close_code = 0
    w.ctl_len = 0


cdef int fb_ws_queue_handshake(fb_ws *w, buf.fl_buf *out, const char *request, size_t n,
                               size_t key_offset, uint64_t *rng) noexcept nogil:
    """Appends the upgrade request (request[0..n), whose Sec-WebSocket-Key value is the
    FB_WS_KEY_LEN bytes at key_offset) with a fresh key, and remembers the Accept it calls
    for. Returns 0 or -ENOMEM."""
    cdef unsigned char nonce[16]
    cdef uint64_t r = 0
    cdef int i
    cdef int rc = buf.fl_buf_reserve(out, n)
    if rc < 0:
        return rc
    cdef char *key = buf.fl_buf_tail(out) + key_offset
    buf.fl_buf_put(out, request, n)
    for i in range(16):
        if i % 8 == 0:
            r = fb_rand(rng)
        nonce[i] = <unsigned char>(r >> (8 * (i % 8)))
    wskey.fl_base64(nonce, 16, key)
    wskey.fl_ws_accept(key, FB_WS_KEY_LEN, w.accept)
    return 0


cdef int fb_ws_queue_frame(buf.fl_buf *out, int opcode, const unsigned char *payload, size_t n,
                           uint64_t *rng) noexcept nogil:
    """Appends one final frame of `opcode`, masked with a fresh key as every client frame must
    be (section 5.3). Returns 0 or -ENOMEM."""
    cdef int rc = buf.fl_buf_reserve(out, n + 14)
    if rc < 0:
        return rc
    cdef unsigned char *p = <unsigned char *>buf.fl_buf_tail(out)
    cdef size_t h = 2, i
    cdef uint64_t mask = fb_rand(rng)
    cdef unsigned char *m
    p[0] = <unsigned char>(0x80 | opcode)
    if n < 126:
        p[1] = <unsigned char>(0x80 | n)
    elif n < 65536:
        p[1] = 0x80 | 126
        p[2] = <unsigned char>(n >> 8)
        p[3] = <unsigned char>n
        h = 4
    else:
        p[1] = 0x80 | 127
        for i in range(8):
            p[2 + i] = <unsigned char>(<uint64_t>n >> (56 - 8 * i))
        h = 10
    m = p + h
    for i in range(4):
        m[i] = <unsigned char>(mask >> (8 * i))
    for i in range(n):
        m[4 + i] = payload[i] ^ m[i & 3]
    out.end += h + 4 + n
    return 0


cdef const char *fb_header(const char *p, size_t n, const char *lower, size_t m,
                           size_t *vlen) noexcept nogil:
    """The value (blanks trimmed) of the first header named `lower` in the head p[0..n), or
    NULL."""
    cdef const char *stop = p + n
    cdef const char *line = <const char *>memchr(p, 10, n)
    cdef const char *nl
    cdef const char *v
    cdef const char *vend
    while line != NULL and line + 1 < stop:
        line += 1
        nl = <const char *>memchr(line, 10, stop - line)
        if nl == NULL:
            return NULL
        if <size_t>(nl - line) > m and line[m] == 58 and fb_ieq(line, lower, m):
            v = line + m + 1
            vend = nl - 1 if (nl - 1)[0] == 13 else nl
            while v < vend and (v[0] == 32 or v[0] == 9):
                v += 1
            while vend > v and ((vend - 1)[0] == 32 or (vend - 1)[0] == 9):
                vend -= 1
            vlen[0] = vend - v
            return v
        line = nl
    return NULL


cdef int fb_ws_check_handshake(fb_ws *w, buf.fl_buf *b, int *status) noexcept nogil:
    """Reads the answer to the upgrade request. Returns 0 while its head is incomplete; 1
    once it is a valid upgrade (101, Upgrade: websocket, Connection: upgrade and the expected
    Sec-WebSocket-Accept; the head is consumed, frames may follow); -1 when the upgrade was
    refused (another status), the 101 is wrong, or the answer is not HTTP. *status is set to
    the answer's status once its head is complete (0 when it is not HTTP)."""
    cdef const char *p = buf.fl_buf_head(b)
    cdef ssize_t n = scan.fl_scan_head_end(p, buf.fl_buf_len(b), w.scanned)
    cdef const char *v
    cdef size_t vlen = 0
    cdef int i
    status[0] = 0
    if n == 0:
        w.scanned = buf.fl_buf_len(b)
        return -1 if w.scanned > FB_MAX_HEAD else 0
    if n < 16 or memcmp(p, b"HTTP/1.", 7) != 0 or p[8] != 32:
        return -1
    for i in range(9, 12):
        if not 48 <= p[i] <= 57:
            return -1
        status[0] = status[0] * 10 + (p[i] - 48)
    if status[0] != 101:
        return -1
    v = fb_header(p, <size_t>n, b"upgrade", 7, &vlen)
    if v == NULL or not fb_icontains(v, vlen, b"websocket", 9):
        return -1
    v = fb_header(p, <size_t>n, b"connection", 10, &vlen)
    if v == NULL or not fb_icontains(v, vlen, b"upgrade", 7):
        return -1
    v = fb_header(p, <size_t>n, b"sec-websocket-accept", 20, &vlen)
    if v == NULL or vlen != wskey.FL_WS_ACCEPT_LEN or memcmp(v, w.accept, vlen) != 0:
        return -1
    buf.fl_buf_consume(b, <size_t>n)
    w.phase = FB_WS_OPEN
    return 1


cdef int fb_ws_step(fb_ws *w, buf.fl_buf *b) noexcept nogil:
    """Consumes server frames from b until a message is complete, a ping or close frame
    arrives, the bytes run out, or a frame breaks section 5 (see FB_WS_* results). Pongs
    are dropped. No extension is negotiated, so every reserved bit must be clear."""
    cdef const unsigned char *p
    cdef size_t n, h, take
    cdef uint64_t length
    cdef int op, i
    cdef bint fin
    while True:
        p = <const unsigned char *>buf.fl_buf_head(b)
        n = buf.fl_buf_len(b)
        if w.in_frame:
            take = n if <uint64_t>n < <uint64_t>w.left else <size_t>w.left
            buf.fl_buf_consume(b, take)
            w.left -= <int64_t>take
            if w.left > 0:
                return FB_WS_MORE
            w.in_frame = False
            if w.fin:
                w.in_message = False
                return FB_WS_MESSAGE
            continue
        if n < 2:
            return FB_WS_MORE
        if p[0] & 0x70 or p[1] & 0x80:
            return FB_WS_BAD  # reserved bits, or a masked frame: servers never mask
        op = p[0] & 0x0F
        fin = (p[0] & 0x80) != 0
        length = p[1] & 0x7F
        h = 2
        if length == 126:
            if n < 4:
                return FB_WS_MORE
            length = (<uint64_t>p[2] << 8) | p[3]
            h = 4
        elif length == 127:
            if n < 10:
                return FB_WS_MORE
            if p[2] & 0x80:
                return FB_WS_BAD  # the most significant bit must be 0
            length = 0
            for i in range(8):
                length = (length << 8) | p[2 + i]
            h = 10
        if op >= 8:
            if not fin or length > FB_WS_MAX_CONTROL or op > FB_WS_OP_PONG or length == 1 \
                    and op == FB_WS_OP_CLOSE:
                return FB_WS_BAD
            if n < h + length:
                return FB_WS_MORE
            memcpy(w.ctl, p + h, length)
            w.ctl_len = <int>length
            buf.fl_buf_consume(b, h + length)
            if op == FB_WS_OP_PING:
                return FB_WS_PING
            if op == FB_WS_OP_CLOSE:
                w.close_code = (w.ctl[0] << 8 | w.ctl[1]) if length >= 2 else 1005
                return FB_WS_CLOSE
            continue  # a pong: nothing to do
        if op == 0:
            if not w.in_message:
                return FB_WS_BAD  # a continuation with no message to continue
        elif op == FB_WS_OP_TEXT or op == FB_WS_OP_BINARY:
            if w.in_message:
                return FB_WS_BAD  # a new message inside a fragmented one
        else:
            return FB_WS_BAD
        buf.fl_buf_consume(b, h)
        w.in_message = True
        w.in_frame = True
        w.fin = fin
        w.left = <int64_t>length
