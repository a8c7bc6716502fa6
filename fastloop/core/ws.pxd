# The WebSocket protocol engine's layout (RFC 6455 framing, RFC 7692 permessage-deflate).
# Everything here is plain C state over caller-owned buffers: no Python object, no allocation
# except zlib's (counted, see fl_ws_zcount). core/ws.pyx says how the pieces fit.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "ws_sha1.h" nogil:
    void fl_sha1(const uint8_t *data, size_t n, uint8_t *out)
    size_t fl_base64_encode(const uint8_t *data, size_t n, char *out)
    int fl_base64_decoded_len(const char *data, size_t n)


# zlib, declared once with only the fields used.
cdef extern from "zlib.h" nogil:
    ctypedef void *(*fl_zalloc_func "alloc_func")(void *opaque, unsigned items, unsigned size)
    ctypedef void (*fl_zfree_func "free_func")(void *opaque, void *address)
    ctypedef struct z_stream:
        unsigned char *next_in
        unsigned avail_in
        unsigned char *next_out
        unsigned avail_out
        const char *msg
        fl_zalloc_func zalloc
        fl_zfree_func zfree
        void *opaque
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_SYNC_FLUSH, Z_DEFLATED, Z_DEFAULT_STRATEGY, Z_RLE
    int deflateInit2(z_stream *strm, int level, int method, int window_bits, int mem_level,
                     int strategy)
    int deflate(z_stream *strm, int flush)
    int deflateReset(z_stream *strm)
    int deflateEnd(z_stream *strm)
    int inflateInit2(z_stream *strm, int window_bits)
    int inflate(z_stream *strm, int flush)
    int inflateReset(z_stream *strm)
    int inflateEnd(z_stream *strm)
    const char *zlibVersion()


# Opcodes (RFC 6455 5.2); the others are reserved.
cdef enum:
    FL_WS_CONT = 0
    FL_WS_TEXT = 1
    FL_WS_BINARY = 2
    FL_WS_CLOSE = 8
    FL_WS_PING = 9
    FL_WS_PONG = 10

# Close codes the engine itself sends (RFC 6455 7.4.1).
cdef enum:
    FL_WS_NORMAL = 1000
    FL_WS_GOING_AWAY = 1001       # the server stops
    FL_WS_PROTOCOL_ERROR = 1002
    FL_WS_NO_STATUS = 1005        # a close frame without a code (never sent on the wire)
    FL_WS_INVALID_DATA = 1007     # text that is not UTF-8
    FL_WS_TOO_BIG = 1009          # a message over max_message, before or after inflating
    FL_WS_INTERNAL_ERROR = 1011   # the server cannot go on (no memory for zlib)

cdef enum:
    FL_WS_MAX_CONTROL = 125       # control frame payload limit (5.5)
    FL_WS_MAX_HEADER = 14         # 2 + 8 (64-bit length) + 4 (mask)
    FL_WS_ACCEPT_LEN = 28         # base64 of a SHA-1
    FL_WS_EXT_RESPONSE_MAX = 160  # longest fl_ws_deflate_response() output
    FL_WS_101_ROOM = 192          # fl_ws_write_101() output besides the protocol and extensions

# fl_ws_parser.flags
cdef enum:
    FL_WS_DEFLATE = 1             # permessage-deflate was negotiated: RSV1 marks compressed messages
    FL_WS_FROM_SERVER = 2         # parse a server's frames (a client's view): masked frames are errors

# fl_ws_parser.state
cdef enum:
    FL_WS_HEAD = 0                # gathering a frame header
    FL_WS_DATA = 1                # inside a text/binary/continuation payload
    FL_WS_CONTROL = 2             # gathering a control frame's payload into ctl
    FL_WS_CLOSED = 3              # a close frame was read: nothing after it is parsed
    FL_WS_FAILED = 4              # a protocol error was reported: it is reported again

# fl_ws_event.type
cdef enum:
    FL_WS_EV_NONE = 0             # every byte given was consumed, more are needed
    FL_WS_EV_DATA = 1             # a piece of a message's payload (unmasked in place)
    FL_WS_EV_PING = 2
    FL_WS_EV_PONG = 3
    FL_WS_EV_CLOSE = 4            # code (FL_WS_NO_STATUS when absent) and reason
    FL_WS_EV_ERROR = 5            # fail the connection: send a close with code, then close

ctypedef struct fl_ws_event:
    int type
    int opcode                    # DATA: the message's opcode, FL_WS_TEXT or FL_WS_BINARY
    bint fin                      # DATA: this piece ends the message
    bint compressed               # DATA: the piece is deflate data for fl_ws_inflate_begin
    const uint8_t *data           # DATA: into the caller's buffer; control: into the parser's ctl
    size_t len
    int code                      # CLOSE: the peer's code; ERROR: the code to close with
    const char *reason            # ERROR: a static description, for the DEBUG log

ctypedef struct fl_ws_parser:
    # Settings
    uint64_t max_message          # payload bytes per message, counted after inflating
    int flags
    # The frame being read
    int state
    uint8_t hdr[FL_WS_MAX_HEADER]
    uint32_t hdr_len              # header bytes gathered so far
    int opcode
    bint fin
    uint64_t frame_left           # payload bytes of this frame not yet consumed
    uint8_t mask[4]
    uint32_t mask_phase           # payload bytes unmasked so far, mod 4
    # The message being read: valid until the next message starts, so that an inflater can
    # still check the last one after the parser has moved on
    bint in_message               # a data frame without FIN was read and its message is open
    int msg_opcode
    bint msg_compressed
    uint64_t msg_wire             # payload bytes on the wire so far
    uint64_t msg_len              # payload bytes after inflating so far
    uint8_t utf8                  # the UTF-8 validator's state (0: at a character boundary)
    # Control frames may be split across reads: gathered here (125 bytes at most)
    uint8_t ctl[FL_WS_MAX_CONTROL]
    uint32_t ctl_len
    # Bookkeeping
    uint64_t offset               # bytes consumed since the start of the stream
    uint64_t error_at             # stream offset of the byte that failed the connection
    int error_code
    const char *error_reason

# permessage-deflate (RFC 7692). Both structs hold a z_stream, which zlib points back to: they
# must stay where they were initialised until freed.
ctypedef struct fl_ws_zcount:
    size_t bytes                  # what zlib holds now through fl_ws_zalloc
    size_t peak

ctypedef struct fl_ws_inflater:
    z_stream z
    fl_ws_zcount mem
    int window_bits
    bint no_context_takeover      # reset the window after each message
    bint ready                    # zlib state allocated (lazily, at the first compressed message)
    bint tail_pending             # the 00 00 ff ff tail is still to be fed for this message
    bint fin                      # the chunk being inflated ends its message
    bint stream_ended             # the sender's final block was inflated: skip to the message end

ctypedef struct fl_ws_deflater:
    z_stream z
    fl_ws_zcount mem
    int window_bits
    int level
    int mem_level
    bint no_context_takeover
    bint ready

ctypedef struct fl_ws_deflate_config:
    # What the server is willing to do; fl_ws_negotiate_deflate() meets the client's offer.
    int server_max_window_bits    # the largest window the server compresses with (8..15)
    int client_max_window_bits    # the largest window the server lets the client use (8..15)
    bint server_no_context_takeover   # reset the server's compressor per message anyway
    bint client_no_context_takeover   # ask the client to reset its compressor per message

ctypedef struct fl_ws_deflate_params:
    # The agreed parameters: what the response header says and both directions' zlib settings.
    bint server_no_context_takeover
    bint client_no_context_takeover
    int server_max_window_bits
    int client_max_window_bits
    bint send_server_bits         # the response names server_max_window_bits
    bint send_client_bits         # the response names client_max_window_bits
