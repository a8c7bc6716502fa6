# The HTTP/1.x response parser of the load generator: it reads what frames each response
# (status, Content-Length, chunked, Connection, 1xx) and skips bodies without copying them.
# Its state lives in an fb_resp; the bytes in the connection's fl_buf.

from libc.stdint cimport int64_t

from fastloop.core cimport buf


# Where the parser is (fb_resp.state).
cdef enum:
    FB_R_HEAD = 0         # status line and headers
    FB_R_BODY = 1         # Content-Length body: body_left bytes to go
    FB_R_CHUNK_SIZE = 2   # chunked: the size line
    FB_R_CHUNK_DATA = 3   # chunked: body_left bytes of chunk data
    FB_R_CHUNK_END = 4    # chunked: the CRLF after the data
    FB_R_TRAILER = 5      # chunked: trailer lines up to the empty one
    FB_R_UNTIL_EOF = 6    # no length: the body ends when the server closes

# What fb_resp_step returns.
cdef enum:
    FB_P_BAD = -1         # not HTTP/1.x, a head over FB_MAX_HEAD or a line over FB_MAX_LINE
    FB_P_MORE = 0         # every byte there was used: read more
    FB_P_DONE = 1         # one response is complete (status in fb_resp.status)

cdef enum:
    FB_MAX_HEAD = 1048576 # a response head larger than this is a protocol error
    FB_MAX_LINE = 4096    # so is a chunk-size or trailer line longer than this

ctypedef struct fb_resp:
    int state
    int status            # of the response being read
    bint close            # the server said it closes after a response (sticky until reset)
    int64_t body_left     # bytes of the body (or chunk) still to skip
    size_t scanned        # bytes at the buffer's head already searched for the end of a head

cdef void fb_resp_reset(fb_resp *r) noexcept nogil
cdef int fb_resp_step(fb_resp *r, buf.fl_buf *b, bint head_only) noexcept nogil
cdef bint fb_resp_ends_at_eof(const fb_resp *r) noexcept nogil
