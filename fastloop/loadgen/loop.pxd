# The load generator's client loop: one BenchLoop per client thread, each with its own poller,
# connection slots (conn.pxd) and counters. Theory of operation at the top of loop.pyx.

from libc.stdint cimport int64_t, uint32_t, uint64_t

from fastloop.core cimport poller
from fastloop.loadgen cimport client


# Bits of fb_config.flags
cdef enum:
    FB_CFG_KEEPALIVE = 1
    FB_CFG_RATE = 2       # open model: requests start at scheduled times (coordinated omission)
    FB_CFG_HEAD = 4       # method HEAD: responses carry no body
    FB_CFG_WS = 8         # WebSocket: upgrade each connection, then echo messages (ws.pxd)

cdef enum:
    FB_NSTATUS = 600      # status codes 100..599 counted one by one; others in slot 0
    FB_NCLOSE = 17        # close codes 1000..1015 one by one; others in the last slot

ctypedef struct fb_config:
    int flags             # FB_CFG_*
    int pipeline          # requests per batch
    int64_t timeout_ns    # per batch of responses
    int64_t connect_timeout_ns
    int64_t retry_ns      # after a failed connect, before the next attempt
    double rate_interval_ns   # rate mode: ns between two requests across all connections
    uint32_t total_conns  # connections across all loops (rate schedule)
    int port_lo           # per-socket ephemeral port range (IP_LOCAL_PORT_RANGE), 0: system's
    int port_hi

# Every request reserved for a batch ends in exactly one of three places:
#   requests (answered), sent_unanswered (written whole, no complete response) or not_sent;
# so sent == requests + sent_unanswered. Orthogonally, each unanswered one is either failed
# (lost to an error) or unfinished (under way when the run ended).
ctypedef struct fb_stats:
    uint64_t requests         # complete responses
    uint64_t sent             # requests written whole
    uint64_t sent_unanswered
    uint64_t not_sent
    uint64_t failed
    uint64_t unfinished
    uint64_t bytes_in
    uint64_t bytes_out
    uint64_t attempted        # connect() calls
    uint64_t established
    uint64_t connect_failed
    uint64_t never_sent       # established connections closed before a request went out whole
    uint64_t peer_eof         # connections the server closed (FIN)
    uint64_t peer_reset       # ... or reset (RST)
    uint64_t closed           # established connections closed, by either side
    uint64_t conn_requests_max
    uint64_t conn_requests_min  # over closed established connections; UINT64_MAX if none
    uint64_t premature_eof    # the server closed before a response was complete
    # WebSocket mode (the status table then counts the handshakes' answers)
    uint64_t ws_upgraded      # handshakes answered 101 with the right Sec-WebSocket-Accept
    uint64_t ws_refused       # ... answered otherwise (or not HTTP): counted as EPROTO too
    uint64_t ws_closed        # close frames received from the server
    uint64_t ws_close_lost    # ... while a message was unanswered
    uint64_t ws_close_codes[FB_NCLOSE]
    uint64_t status[FB_NSTATUS]
    uint64_t err_connect[FB_NERRNO]
    uint64_t err_read[FB_NERRNO]
    uint64_t err_write[FB_NERRNO]


cdef class BenchLoop:
    cdef poller.fl_poller poll
    cdef bint poll_open
    cdef fb_config cfg
    cdef fb_stats st
    cdef fb_hist *lat           # latency from the intended start (coordinated omission corrected)
    cdef fb_hist *lat_raw       # latency from the actual start (rate mode only differs)
    cdef fb_conn *conns
    cdef uint32_t nconns
    cdef uint32_t active        # slots not FB_DONE
    cdef char *reqbuf           # cfg.pipeline copies of the request, back to back
    cdef size_t req_len         # one request
    cdef client.sockaddr_storage target
    cdef int target_len
    cdef int family
    cdef client.sockaddr_storage *sources
    cdef int *source_lens
    cdef int nsources
    cdef uint32_t next_source
    cdef int64_t budget         # requests left to start; -1: unlimited
    cdef int64_t now            # refreshed after each wait
    cdef int64_t t0
    cdef int64_t end_ns         # duration mode: stop at this instant; 0: none
    cdef int64_t next_due       # earliest wake_ns or deadline_ns of any slot (may be early)
    cdef int64_t finished_ns
    cdef int stopping           # set from another thread (stop()), then the poller is woken
    cdef int draining           # the same, for stop(drain=True): no new batch; ends once none is under way
    cdef unsigned char *wsmsg   # WebSocket mode: the payload of every message (unmasked)
    cdef size_t wsmsg_len
    cdef int ws_opcode          # FB_WS_OP_TEXT or FB_WS_OP_BINARY
    cdef size_t key_offset      # of the Sec-WebSocket-Key value in reqbuf (the handshake)
    cdef uint64_t rng           # fb_rand state: masks and keys

    cdef int loop(self) noexcept nogil
    cdef bint drained(self) noexcept nogil
    cdef fb_conn *conn_for(self, uint64_t token) noexcept nogil
    cdef void begin(self, fb_conn *c) noexcept nogil
    cdef void open_conn(self, fb_conn *c) noexcept nogil
    cdef void on_connected(self, fb_conn *c) noexcept nogil
    cdef void on_event(self, fb_conn *c, int mask) noexcept nogil
    cdef void send_more(self, fb_conn *c) noexcept nogil
    cdef void send_failed(self, fb_conn *c, int err) noexcept nogil
    cdef void count_sent(self, fb_conn *c, int whole) noexcept nogil
    cdef void read_all(self, fb_conn *c) noexcept nogil
    cdef int parse(self, fb_conn *c) noexcept nogil
    cdef int complete(self, fb_conn *c) noexcept nogil
    cdef void batch_done(self, fb_conn *c) noexcept nogil
    cdef void settle(self, fb_conn *c, uint64_t *outcome) noexcept nogil
    cdef void fail(self, fb_conn *c, uint64_t *table, int err) noexcept nogil
    cdef void peer_closed(self, fb_conn *c, bint reset) noexcept nogil
    cdef void close_conn(self, fb_conn *c) noexcept nogil
    cdef void wait_until(self, fb_conn *c, int64_t when) noexcept nogil
    cdef void set_deadline(self, fb_conn *c, int64_t when) noexcept nogil
    cdef void check_timers(self) noexcept nogil
    cdef void finish(self) noexcept nogil
