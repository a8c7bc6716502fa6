# The layout of a parsed request head. Every span points into the caller's buffer (zero-copy):
# it is valid only while that buffer is neither moved nor reused.

from libc.stdint cimport int64_t, uint32_t


cdef enum:
    # The most header fields limits["fields"] may allow (a request with more is answered 431):
    # their spans live in a fixed array, 16 bytes each.
    FL_MAX_HEADERS = 256
    # The most any head limit (request_line, header_bytes, field_size) may be set to: a head
    # must fit in one read buffer, and every span offset in uint32_t with room to spare.
    FL_MAX_HEAD_BYTES = 1 << 30

# Bits of fl_request.flags
cdef enum:
    FL_REQ_KEEP_ALIVE = 1         # the connection may carry another request after this one
    FL_REQ_HEAD = 2               # method HEAD: the response has no body
    FL_REQ_CHUNKED = 4            # Transfer-Encoding: chunked
    FL_REQ_EXPECT_CONTINUE = 8    # Expect: 100-continue
    FL_REQ_CONN_KEEP_ALIVE = 16   # the client sent "Connection: keep-alive" (echoed to HTTP/1.0)
    FL_REQ_GET = 32               # method GET
    FL_REQ_CONN_CLOSE = 64        # the client sent "Connection: close"
    FL_REQ_HTTP10 = 128           # HTTP/1.0: keep-alive must be echoed to be kept
    FL_REQ_UPGRADE = 256          # an Upgrade field is present (a WebSocket may be asked for)
    FL_REQ_WEBSOCKET = 512        # (set by the loop) a valid WebSocket upgrade: a WebSocket job

ctypedef struct fl_span:
    # 32 bits suffice: a head is at most FL_MAX_HEAD_BYTES long (limits_from enforces it).
    uint32_t off                  # from the start of the request head
    uint32_t len

ctypedef struct fl_header:
    fl_span name
    fl_span value

ctypedef struct fl_request:
    fl_span method
    fl_span target
    fl_span path                  # target up to '?'
    fl_span query                 # after '?', without it
    fl_span authority             # absolute-form: the target's authority (RFC 9112 3.2.2); else len 0
    int minor                     # HTTP/1.<minor>
    int flags
    int num_headers
    uint32_t head_len             # request line + headers + the blank line
    int64_t content_length        # -1 when absent; INT64_MAX when beyond any limit (413)
    fl_header headers[FL_MAX_HEADERS]

ctypedef struct fl_request_line:
    # What a handler's Request is built from, kept per connection so the head is parsed once.
    fl_span method
    fl_span path
    fl_span query
    fl_span authority             # absolute-form only: what Request.host reports instead of Host
    int minor

ctypedef struct fl_limits:
    # Validated by limits_from: the head sizes are at most FL_MAX_HEAD_BYTES, body_bytes at
    # most MAX_BODY_BYTES, so no sum below can overflow its type.
    uint32_t request_line         # bytes, 414 beyond (RFC 9112 3 recommends at least 8000)
    uint32_t header_bytes         # whole head, 431 beyond
    uint32_t field_size           # one header line, 431 beyond (gunicorn: 8190)
    uint32_t fields               # header count, 431 beyond (at most FL_MAX_HEADERS)
    int64_t body_bytes            # 413 beyond
    int lenient_targets           # accept raw bytes >= 0x80 (UTF-8) in a request-target

# States of fl_chunked.state
cdef enum:
    FL_CHUNK_SIZE = 0             # at a chunk-size line
    FL_CHUNK_DATA = 1             # inside chunk data
    FL_CHUNK_DATA_END = 2         # at the CRLF after chunk data
    FL_CHUNK_TRAILERS = 3         # after the last chunk: trailer fields until an empty line

ctypedef struct fl_chunked:
    # Decodes in place: chunk data is moved down to follow the head, so the body ends up
    # contiguous at [head_len, out) while the raw message has been read up to in_. Those are
    # offsets into one buffer, which is capped (worker.pyx FL_RBUF_MAX) below 4 GiB, so they
    # fit 32 bits; a chunk's size comes from the wire and does not: left is 64 bits.
    int state
    uint64_t left                 # bytes left in the current chunk's data
    uint32_t in_                  # next raw byte to decode, from the start of the request
    uint32_t out                  # end of the decoded body, from the start of the request
    uint32_t head_len
    uint32_t trailer_bytes
