# Layouts of the load generator (`fastloop bench`): one BenchLoop per client thread, each with
# its own poller and its own connections; a log-linear latency histogram filled without the GIL.

from libc.stdint cimport int64_t, uint32_t, uint64_t


# The histogram (HdrHistogram-style): values below FB_HIST_LINEAR ns are counted exactly; above,
# each power of two is cut into FB_HIST_HALF equal buckets, so a bucket is never wider than
# 1/1024 of its values (three significant digits). Values past the last octave (~2200 s) land
# in the last bucket.
cdef enum:
    FB_HIST_SUB_BITS = 10
    FB_HIST_HALF = 1024           # 1 << FB_HIST_SUB_BITS
    FB_HIST_LINEAR = 2048         # 2 << FB_HIST_SUB_BITS
    FB_HIST_OCTAVES = 30
    FB_HIST_LEN = 32768           # FB_HIST_LINEAR + FB_HIST_OCTAVES * FB_HIST_HALF

ctypedef struct fb_hist:
    uint64_t total
    uint64_t sum                  # ns, for the mean
    uint64_t min
    uint64_t max
    uint64_t counts[FB_HIST_LEN]


# What a client connection is doing (fb_conn.state).
cdef enum:
    FB_IDLE = 0           # no request under way; starts one at wake_ns (rate schedule, retry)
    FB_CONNECTING = 1     # non-blocking connect() under way: waits for writable
    FB_SENDING = 2        # writing the batch of requests
    FB_RECEIVING = 3      # every request of the batch written; reading the responses
    FB_AWAIT_EOF = 4      # every response read, the server closes: waits for its EOF
    FB_DONE = 5           # the request budget is spent: this slot starts nothing more

# Where the response parser is (fb_conn.rstate).
cdef enum:
    FB_R_HEAD = 0         # status line and headers
    FB_R_BODY = 1         # Content-Length body: body_left bytes to go
    FB_R_CHUNK_SIZE = 2   # chunked: the size line
    FB_R_CHUNK_DATA = 3   # chunked: body_left bytes of chunk data
    FB_R_CHUNK_END = 4    # chunked: the CRLF after the data
    FB_R_TRAILER = 5      # chunked: trailer lines up to the empty one
    FB_R_UNTIL_EOF = 6    # no length: the body ends when the server closes

# Bits of fb_conn.flags
cdef enum:
    FB_F_CONNECTED = 1    # established (counted once)
    FB_F_CLOSE = 2        # the server announced it closes after this response
    FB_F_PEER_EOF = 4     # the server shut its side

# Bits of fb_config.flags
cdef enum:
    FB_CFG_KEEPALIVE = 1
    FB_CFG_RATE = 2       # open model: requests start at scheduled times (coordinated omission)
    FB_CFG_HEAD = 4       # method HEAD: responses carry no body

cdef enum:
    FB_NSTATUS = 600      # status codes 100..599 counted one by one; others in slot 0
    FB_MAX_HEAD = 1048576 # a response head larger than this is a protocol error (EPROTO)

ctypedef struct fb_conn:
    int fd                # -1 when the slot has no connection
    uint32_t index        # slot in its loop
    uint32_t gen          # bumped on close: events carrying an older one are stale
    uint32_t gindex       # connection number across all loops (rate phase, source choice)
    int state
    int rstate
    int flags
    int batch             # requests in the batch under way (reserved from the budget)
    int inflight          # requests written whose responses are not complete
    size_t wsent          # bytes of the batch written
    char *rbuf
    uint32_t rcap
    uint32_t rpos         # first unparsed byte
    uint32_t rlen         # end of the bytes read
    uint32_t scanned      # bytes after rpos already searched for the end of a head
    int status            # status of the response being read
    int64_t body_left
    uint64_t nreq         # complete responses on the current connection
    uint64_t seq          # rate mode: number of this slot's next scheduled request
    int64_t intended_ns   # when the request was due (rate mode) or started
    int64_t started_ns    # when it was really started (connect or first write)
    int64_t wake_ns       # FB_IDLE: when to start the next request
    int64_t deadline_ns   # connect, response or EOF timeout

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

ctypedef struct fb_stats:
    uint64_t requests         # complete responses
    uint64_t failed           # requests that got no complete response
    uint64_t sent             # requests written whole
    uint64_t bytes_in
    uint64_t bytes_out
    uint64_t attempted        # connect() calls
    uint64_t established
    uint64_t connect_failed
    uint64_t peer_eof         # connections the server closed (FIN)
    uint64_t peer_reset       # ... or reset (RST)
    uint64_t closed           # established connections closed, by either side
    uint64_t conn_requests_max
    uint64_t conn_requests_min  # over closed established connections; UINT64_MAX if none
    uint64_t premature_eof    # the server closed before a response was complete
    uint64_t status[FB_NSTATUS]
    uint64_t err_connect[FL_NERRNO]
    uint64_t err_read[FL_NERRNO]
    uint64_t err_write[FL_NERRNO]


cdef class LatencyHistogram:
    cdef fb_hist *h
    cdef void merge_from(self, const fb_hist *other) noexcept nogil


cdef class BenchLoop:
    cdef fl_poller poller
    cdef bint poller_open
    cdef fb_config cfg
    cdef fb_stats st
    cdef fb_hist *lat           # latency from the intended start (coordinated omission corrected)
    cdef fb_hist *lat_raw       # latency from the actual start (rate mode only differs)
    cdef fb_conn *conns
    cdef uint32_t nconns
    cdef uint32_t active        # slots not FB_DONE
    cdef char *reqbuf           # cfg.pipeline copies of the request, back to back
    cdef size_t req_len         # one request
    cdef sockaddr_storage target
    cdef int target_len
    cdef int family
    cdef sockaddr_storage *sources
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
    cdef uint64_t unfinished    # requests under way when the run ended

    cdef int loop(self) noexcept nogil
    cdef fb_conn *conn_for(self, uint64_t token) noexcept nogil
    cdef void begin(self, fb_conn *c) noexcept nogil
    cdef void open_conn(self, fb_conn *c) noexcept nogil
    cdef void on_connected(self, fb_conn *c) noexcept nogil
    cdef void on_event(self, fb_conn *c, int mask) noexcept nogil
    cdef void send_more(self, fb_conn *c) noexcept nogil
    cdef void read_all(self, fb_conn *c) noexcept nogil
    cdef int parse(self, fb_conn *c) noexcept nogil
    cdef int parse_head(self, fb_conn *c, uint32_t end) noexcept nogil
    cdef int complete(self, fb_conn *c) noexcept nogil
    cdef void batch_done(self, fb_conn *c) noexcept nogil
    cdef void fail(self, fb_conn *c, uint64_t *table, int err) noexcept nogil
    cdef void peer_closed(self, fb_conn *c, bint reset) noexcept nogil
    cdef void close_conn(self, fb_conn *c) noexcept nogil
    cdef void wait_until(self, fb_conn *c, int64_t when) noexcept nogil
    cdef void set_deadline(self, fb_conn *c, int64_t when) noexcept nogil
    cdef void check_timers(self) noexcept nogil
    cdef void finish(self) noexcept nogil
