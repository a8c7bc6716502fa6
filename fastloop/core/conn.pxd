# The per-connection C struct and its state machine. Only its owning worker thread ever
# touches it.
#
# Theory of operation. A connection is in one of six states (below), and its flags say what
# the state alone does not. Every event ends in conn_settle (closing.pyx), which flushes it,
# then puts it on the timer its state needs, lingers or closes it. Every change of state goes
# through a named transition of conn_state.pyx (conn_to_*, conn_resume), which sets the flags
# that go with it. The state x event table (-> the state it takes; the function that makes it):
#
#   state \ event  readable (conn_read)      answer message (inbox)     timer expires
#   --------------+-------------------------+--------------------------+--------------------------
#   READ_HEAD      head parsed: a static    -                          HEADER: 408 if bytes came,
#                  answer, or staged        (messages only come        close; IDLE: close
#                  (conn_process, stage);   while a handler has it)
#                  body to wait for ->
#                  READ_BODY; a streaming
#                  route -> STREAMING
#                  (conn_start_job); staged
#                  requests -> IN_HANDLER
#                  (conn_end_process); a
#                  WebSocket upgrade ->
#                  STREAMING (conn_ws_
#                  upgrade); bad input: 4xx,
#                  CLOSE_AFTER (conn_reject)
#   READ_BODY      body complete: answered  -                          BODY: 408, close
#                  or staged -> READ_HEAD
#   IN_HANDLER     READ_MORE: read once     queued, then output        WRITE: close
#                  it is answered           (conn_pump); the one
#                                           marked END -> resume_state
#                                           (conn_answer_done), END_
#                                           MORE: JOB_WAITS until the
#                                           client reads
#   STREAMING      the body to the job      as IN_HANDLER; the END ->  BODY: the handler's read
#                  (conn_read_body) until   READ_HEAD, the unread      fails 408, CLOSE_AFTER;
#                  BODY_FULL or its end,    body lingered away (conn_  WRITE: close
#                  then READ_MORE           answer_done); MSG_WS_OPEN
#                                           -> WEBSOCKET (conn_ws_open)
#   CLOSING        discarded until EOF,     -                          LINGER: close
#                  then close
#   WEBSOCKET      frames parsed, pieces    frames out; MSG_WS_CLOSE:  WS_PING: a ping; WS_PONG:
#                  to the job as records,   our close frame; MSG_END   close; WS_CLOSE: our
#                  pings answered; a close  (the app is done): close   close if the app never
#                  or bad frame: the close  frame unless sent (conn_   took the peer's, else
#                  record, reading stops    ws_job_done)               close (conn_ws_timer)
#                  (conn_ws_read, ws_conn.pyx)
#
# In every state: writable -> flush (conn_flush); output left -> the WRITE timer; CLOSE_AFTER
# and nothing left to send (and no handler) -> CLOSING when input may be left unread (linger:
# shut down writing, drain), else closed; an I/O error, EOF after the answers, ENOMEM or the
# stop deadline -> closed (conn_close: the slot is free, its generation bumped).
#
# What is folded into the states, and what stays a flag. A streaming route's job (and an
# upgrade's, until it opens) was IN_HANDLER plus a STREAM flag that changed what a readable
# edge, a timer and the job's end do: it is the state STREAMING now, so each of those reads
# the state (conn_in_handler() where both handler states act alike). BODY_FULL (flow control
# of STREAMING and WEBSOCKET) and JOB_WAITS (an IN_HANDLER job held back for a slow reader)
# stay flags: they pause a state rather than change what it does; conn_to_next_request and
# conn_to_websocket clear BODY_FULL, the job's end clears JOB_WAITS (jobs.pyx). CLOSING always
# has CLOSE_AFTER (conn_to_closing sets it), and the bit stays set there: "parse nothing more"
# stays one bit test in every state.
#
# Invariants, checked after every event in a FASTLOOP_DEBUG=1 build (conn_check.pyx):
#   - a free slot (fd -1) has no job, timer, queued answer, file or buffer;
#   - c.job is set while IN_HANDLER or STREAMING, and otherwise only on a WebSocket (c.ws:
#     WEBSOCKET, or CLOSING one) whose application runs; c.ws exactly while WEBSOCKET or
#     closing one; JOB_WAITS only while a handler has the job (IN_HANDLER or STREAMING);
#     BODY_FULL only while STREAMING or on a WebSocket; CLOSING only with CLOSE_AFTER;
#   - each buffer has start <= end <= cap, and no capacity without a block;
#   - the answer queue has a head exactly when it has a tail; file_end only with a file;
#   - a connection on a timer is linked into its kind's list, one on none is on no list;
#   - for the worker: open == live slots, accepted == closed + open, each timer list holds
#     open connections of its kind only, sorted by deadline.

from libc.stdint cimport int64_t, uint32_t, uint64_t

from fastloop.core cimport buf


# What the connection is doing (fl_conn.state).
cdef enum:
    CONN_READ_HEAD = 0    # waiting for (the rest of) a request head; also an idle keep-alive
    CONN_READ_BODY = 1    # head complete, waiting for the rest of a Content-Length body
    CONN_IN_HANDLER = 2   # complete requests are with a handler thread (c.job): nothing more is parsed
    CONN_CLOSING = 3      # last response sent, write side shut: input is discarded until EOF
    CONN_WEBSOCKET = 4    # upgraded (c.ws): frames, not requests; c.job while the app runs
    CONN_STREAMING = 5    # a head is with a handler (c.job), which takes its body as it arrives
                          # (a streaming route), or decides on a WebSocket upgrade

# Bits of fl_conn.flags
cdef enum:
    CONN_F_CLOSE_AFTER = 1    # parse nothing more; close (or linger) once the output is flushed
    CONN_F_PEER_EOF = 2       # the client shut its write side
    CONN_F_PAUSED = 4         # unsent output above the high-water mark: stop reading requests
    CONN_F_CONTINUE_SENT = 8  # "100 Continue" already sent for the current request
    CONN_F_ANSWERED = 16      # the current job's answer has begun (no 100 Continue any more)
    CONN_F_NEW_REQUEST = 32   # a request completed: the header timer restarts for the next one
    CONN_F_LINGER = 64        # input may be left unread: shut down writing and drain before close
                              # (128 was STREAM: the state STREAMING now)
    CONN_F_USED = 256         # at least one request was answered (else: fresh, its first may be coming)
    CONN_F_READ_MORE = 512    # reading stopped short of EAGAIN (or an edge went unread): read again
    CONN_F_BODY_FULL = 1024   # STREAMING, WEBSOCKET: the job holds enough body or records: stop reading
    CONN_F_HUP = 2048         # the poller reported the peer's shutdown: read on until EOF
    CONN_F_JOB_WAITS = 4096   # c.job has requests left, held back until the client reads (END_MORE)

# Timer kinds: each has one fixed duration, so a FIFO list per kind stays sorted by deadline.
cdef enum:
    FL_TIMER_NONE = 0
    FL_TIMER_HEADER = 1       # a request head is being received: not restarted by progress
    FL_TIMER_IDLE = 2         # keep-alive, between requests
    FL_TIMER_WRITE = 3        # the client does not read its responses
    FL_TIMER_LINGER = 4       # lingering close
    FL_TIMER_BODY = 5         # a request body is arriving: restarted by progress
    FL_TIMER_WS_CLOSE = 6     # a WebSocket close handshake: the other side's close frame is due
    FL_TIMER_WS_PING = 7      # a quiet WebSocket: send a ping when it runs out (not a timeout)
    FL_TIMER_WS_PONG = 8      # the ping's pong is due: a peer that never answers is dead
    FL_NTIMERS = 9

ctypedef struct fl_conn:
    int fd                    # -1 while the slot is free
    uint32_t slot
    uint32_t gen              # bumped on close: events carrying an older one are stale
    int state
    int flags
    # Offsets into rb fit 32 bits (jobs keep them so): rbuf_ensure caps a read buffer at
    # FL_RBUF_MAX (2 GiB). Lengths from the wire are 64-bit: a streaming body may be far larger.
    buf.fl_buf rb             # request bytes: rb.start is the current request, rb.end the end of
                              # the bytes read; no block while idle (blocks come from the pool)
    uint32_t scanned          # bytes after rb.start already searched for the end of the head
    uint32_t head_len         # head of the current request, once parsed
    uint64_t req_len          # raw bytes of the current request (head + framed body), once known
    uint64_t body_len         # its decoded body, which follows the head in rb (streaming:
                              # the Content-Length, then the bytes handed to the handler)
    fl_chunked chunked        # the decoder's state, for a chunked body
    uint64_t body_left        # streaming: body bytes still to come (chunked: 1 until the end)
    fl_job *job               # the requests a handler thread has, while IN_HANDLER or STREAMING
    fl_msg *outq              # answer messages waiting behind a file being sent, in order
    fl_msg *outq_tail
    int file_fd               # a file being sent with sendfile, or -1
    int64_t file_off
    int64_t file_left
    int file_end              # MSG_F_END | END_* flags to apply once the file is sent, or 0
    int file_answered         # ... and the count of requests that end answered
    int resume_state          # the state to take again when the job's answers are done
    int route                 # index of its static route, or -1: it needs Python
    int req_flags             # FL_REQ_* of the current request
    fl_request_line line      # its method, path, query and version
    buf.fl_buf wb             # responses: wb.start is the first byte not yet sent
    int timer                 # FL_TIMER_*, the list the connection is on
    int64_t deadline          # monotonic ms
    fl_conn *tprev
    fl_conn *tnext
    void *ws                  # its fl_ws_conn (ws_conn.pyx) once upgraded, else NULL
