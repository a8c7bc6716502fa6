# Layouts of the event loops: a Worker owns connections, an Acceptor only hands them out.

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t


cdef enum:
    FL_NERRNO = 256             # errno values counted by name; larger ones share the last slot
    FL_NOTE_WS = 100000         # note() (notes.pyx): a WebSocket failed with close code (what - FL_NOTE_WS)

# Worker.stop_phase: the loop's own view of a graceful stop, changed by its thread only (the
# `stopping` request comes from another thread at any instant, even in the middle of a turn).
cdef enum:
    FL_STOP_NONE = 0
    FL_STOP_BEGUN = 1           # begin_stop() ran: answers say Connection: close
    FL_STOP_GRACE_OVER = 2      # FL_FRESH_GRACE_MS later: idle connections are closed

ctypedef struct fl_counters:
    uint64_t accepted           # connections this loop took ownership of (accept() or hand-over)
    uint64_t closed             # ... and closed; accepted == closed + open
    uint64_t open
    uint64_t handed_off         # acceptor: passed on to a worker
    uint64_t shed               # accepted with the reserve descriptor while out of them, closed
    uint64_t requests
    uint64_t bytes_in
    uint64_t bytes_out
    uint64_t parse_errors
    uint64_t aborted            # connections closed while their handler was still running
    uint64_t late               # answer messages for a connection that had closed
    uint64_t ws_opened          # connections upgraded to WebSockets
    uint64_t ws_errors[4]       # WebSockets failed by the server: 1002, 1007, 1009, other
    uint64_t rejected[FL_NSTATUS]
    uint64_t timeouts[FL_NTIMERS]
    uint64_t accept_errors[FL_NERRNO]
    uint64_t io_errors[FL_NERRNO]

ctypedef struct fl_rejected:    # a request the core answered with an error, for the access log
    int status
    int sent                    # body bytes of the error answer
    int port                    # the client's; -1 over a Unix socket
    int line_len
    char host[128]              # the client's address as text (NUL-terminated; "" if unknown)
    char line[256]              # the request line as far as it was read, cut at 256 bytes

ctypedef struct fl_listener:
    int fd                      # -1 when this loop has none (acceptor dispatch)
    int retry                   # the last drain ended on an error, not EAGAIN: retry soon

ctypedef struct fl_static:
    const char *path
    uint32_t path_len
    const char *head            # status line and fixed headers, without Date and Connection
    uint32_t head_len
    const char *body
    uint32_t body_len


cdef class Loop:
    cdef fl_poller poller
    cdef fl_listener listener
    cdef fl_counters counters
    cdef bint poller_open
    cdef int stopping           # set by Server.stop() from another thread, then woken
    cdef int64_t stop_deadline
    cdef readonly int index
    cdef object __weakref__

    cdef int loop(self) noexcept nogil
    cdef int accept_one(self) noexcept nogil
    cdef void close_listener(self) noexcept nogil
    cdef void count_errno(self, uint64_t *table, int err) noexcept nogil


cdef class ConnLimit:
    cdef int64_t *count         # open connections of every worker sharing this limit
    cdef readonly int64_t limit


cdef class Worker(Loop):
    # connection table: slots[i] lives until the worker ends; free_slots is a stack of indices
    cdef fl_conn **slots
    cdef uint32_t nslots, cap_slots
    cdef uint32_t *free_slots
    cdef uint32_t nfree
    cdef fl_timers timers
    cdef fl_bufpool pool        # spare FL_BUF_SIZE buffers
    cdef fl_pool *handlers      # where jobs go (the pool of handler_pool)
    cdef object handler_pool    # the HandlerPool: keeps pool alive
    cdef int stop_phase         # FL_STOP_*
    cdef fl_jobreq stage[64]    # pipelined requests of one connection gathered for one job
    cdef int nstage
    cdef size_t stage_bytes
    cdef fl_job *jobs_first     # this turn's jobs, queued on the pool at the end of the turn
    cdef fl_job *jobs_last
    cdef int njobs
    cdef uint64_t *resume       # tokens of connections to read again next turn
    cdef int nresume, cap_resume
    cdef uint64_t *touched      # tokens of connections that got answer messages this turn
    cdef int ntouched, cap_touched
    cdef fl_request req         # scratch for the one request being parsed
    cdef fl_limits limits
    cdef int64_t buffered_chunked_max  # body_bytes, or less: what fits one read buffer
    cdef int64_t now_ms
    cdef int64_t date_sec
    cdef char date_line[40]     # "Date: <IMF-fixdate>\r\n", refreshed once a second
    cdef bint is_tcp
    cdef fl_static *statics
    cdef int nstatics
    cdef object static_keep     # the bytes the fl_static pointers point into
    cdef fl_static *streams     # exact paths of streaming routes (only .path is used)
    cdef int nstreams
    cdef bint stream_bodies     # every Python request with a body streams it (ASGI)
    cdef bint websockets        # upgrade requests go to the application as WebSockets
    cdef bint ws_ping           # quiet WebSockets are pinged (the ws_ping timeout is not 0)
    cdef uint8_t *ws_room       # inflated WebSocket bytes on their way to a job (ws_conn.pyx)
    cdef fl_static *ws_paths    # an App's WebSocket routes (only .path is used); none: any path
    cdef int nws_paths
    cdef object ws_path_keep
    cdef fl_pool *ws_pool       # where WebSocket jobs go, if not to handlers (an App's routes)
    cdef object ws_pool_keep    # the pool's owner (an AsgiBridge): keeps it alive
    cdef fl_inbox *inbox
    cdef bint log_events        # the "fastloop" logger shows DEBUG: log each rejection/timeout
    cdef int events_to_log[64]  # statuses (timeouts as -kind) since the last turn's log flush
    cdef int nevents_to_log
    cdef object on_rejected     # routes.on_rejected(status, client, line, sent), or None: access log
    cdef fl_rejected rejected_to_log[64]  # core rejections since the last flush, for on_rejected
    cdef int nrejected_to_log
    cdef ConnLimit conn_limit   # None, or shared with the server's other workers
    cdef int64_t *open_total    # conn_limit.count, or NULL when there is no limit
    cdef int64_t max_open

    cdef int loop(self) noexcept nogil
    cdef void adopt(self, int fd) noexcept nogil
    cdef fl_conn *conn_for(self, uint64_t token) noexcept nogil
    cdef void conn_event(self, fl_conn *c, int mask) noexcept nogil
    cdef void conn_read(self, fl_conn *c, int mask) noexcept nogil
    cdef int conn_process(self, fl_conn *c) noexcept nogil
    cdef void conn_reject(self, fl_conn *c, int status) noexcept nogil
    cdef void conn_put_error(self, fl_conn *c, int status) noexcept nogil
    cdef void consume(self, fl_conn *c) noexcept nogil
    cdef void conn_past_request(self, fl_conn *c) noexcept nogil
    cdef void accept_all(self) noexcept nogil
    cdef void refresh_date(self) noexcept nogil
    cdef void queue(self, uint64_t **arr, int *n, int *cap, fl_conn *c) noexcept nogil


cdef class Acceptor(Loop):
    cdef list workers           # keeps the Workers, and so their inboxes, alive
    cdef fl_inbox **inboxes
    cdef int ninboxes
    cdef int next_worker
    cdef int loop(self) noexcept nogil
    cdef void hand_off(self, int fd) noexcept nogil
