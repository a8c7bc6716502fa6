# A client connection slot of the load generator. Only the BenchLoop that owns it touches it.

from libc.stdint cimport int64_t, uint32_t, uint64_t

from fastloop.core cimport buf


# What a slot is doing (fb_conn.state).
cdef enum:
    FB_IDLE = 0           # no batch under way; starts one at wake_ns (rate schedule, retry)
    FB_CONNECTING = 1     # non-blocking connect() under way: waits for writable
    FB_SENDING = 2        # writing the batch of requests
    FB_RECEIVING = 3      # every request of the batch written; reading the responses
    FB_AWAIT_EOF = 4      # every response read, the server closes: waits for its EOF
    FB_DONE = 5           # the request budget is spent: this slot starts nothing more

# Bits of fb_conn.flags (cleared when the connection closes)
cdef enum:
    FB_F_CONNECTED = 1    # established (counted once)
    FB_F_SENT = 2         # at least one request was written whole on this connection

ctypedef struct fb_conn:
    int fd                # -1 when the slot has no connection
    uint32_t index        # slot in its loop
    uint32_t gen          # bumped on close: events carrying an older one are stale
    uint32_t gindex       # connection number across all loops (rate phase, source choice)
    int state
    int flags
    # The batch under way: `batch` requests reserved from the budget, of which `nsent` are
    # written whole and `nanswered` answered (nanswered <= nsent <= batch, always).
    int batch
    int nsent
    int nanswered
    size_t wsent          # bytes of the batch written
    buf.fl_buf rbuf       # bytes read and not yet parsed
    fb_resp resp          # where the response parser is (response.pxd)
    # WebSocket mode: what is queued to send (handshake, frames), and how many of those bytes
    # must still go out before the message under way is written whole (0: none is).
    buf.fl_buf wbuf
    size_t wmark
    fb_ws ws              # handshake and frame parser (ws.pxd)
    uint64_t nreq         # complete responses on the current connection
    uint64_t seq          # rate mode: number of this slot's next scheduled request
    int64_t intended_ns   # when the batch was due (rate mode) or started
    int64_t started_ns    # when it was really started (connect or first write)
    int64_t wake_ns       # FB_IDLE: when to start the next batch
    int64_t deadline_ns   # connect, response or EOF timeout
