# The WebSocket side of the load generator (RFC 6455, client role): the upgrade handshake and
# its Sec-WebSocket-Accept check, masked client frames, and a parser for the server's frames
# that skips message payloads where they stand. The loop (loop.pyx) decides what to send when.

from libc.stdint cimport int64_t, uint64_t

from fastloop.core cimport buf


# Where a connection is (fb_ws.phase).
cdef enum:
    FB_WS_HANDSHAKE = 0   # the upgrade request is going out or answered: waiting for its 101
    FB_WS_OPEN = 1        # upgraded: messages go back and forth
    FB_WS_CLOSED = 2      # the server's close frame was answered: waiting for its EOF

# What fb_ws_step returns.
cdef enum:
    FB_WS_BAD = -1        # a frame no server may send (masked, reserved bits or opcode, ...)
    FB_WS_MORE = 0        # every byte there was used: read more
    FB_WS_MESSAGE = 1     # a data message is complete (its last fragment's payload skipped)
    FB_WS_PING = 2        # a ping: its payload is in fb_ws.ctl, to be echoed in a pong
    FB_WS_CLOSE = 3       # a close frame: its code in fb_ws.close_code (1005: none given)

cdef enum:
    FB_WS_OP_TEXT = 1
    FB_WS_OP_BINARY = 2
    FB_WS_OP_CLOSE = 8
    FB_WS_OP_PING = 9
    FB_WS_OP_PONG = 10
    FB_WS_KEY_LEN = 24        # base64 of the 16 random bytes of Sec-WebSocket-Key
    FB_WS_MAX_CONTROL = 125   # a control frame's payload is at most this long (section 5.5)

ctypedef struct fb_ws:
    int phase
    bint in_message       # a fragmented data message is under way
    bint in_frame         # a data frame's header is read; `left` payload bytes to skip
    bint fin              # that frame ends its message
    int64_t left
    size_t scanned        # handshake: bytes already searched for the end of the 101's head
    int close_code
    int ctl_len           # payload length of the last ping or close frame
    unsigned char ctl[FB_WS_MAX_CONTROL]
    char accept[28]       # the Sec-WebSocket-Accept this connection's key calls for

cdef uint64_t fb_rand(uint64_t *state) noexcept nogil
cdef void fb_ws_reset(fb_ws *w) noexcept nogil
cdef int fb_ws_queue_handshake(fb_ws *w, buf.fl_buf *out, const char *request, size_t n,
                               size_t key_offset, uint64_t *rng) noexcept nogil
cdef int fb_ws_queue_frame(buf.fl_buf *out, int opcode, const unsigned char *payload, size_t n,
                           uint64_t *rng) noexcept nogil
cdef int fb_ws_check_handshake(fb_ws *w, buf.fl_buf *b, int *status) noexcept nogil
cdef int fb_ws_step(fb_ws *w, buf.fl_buf *b) noexcept nogil
