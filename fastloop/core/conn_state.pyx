# The named transitions of a connection's state machine (the state x event table is at the top
# of conn.pxd). Everything that changes fl_conn.state goes through one of these: each sets the
# state and the flags that come and go with it, so a state cannot be entered half-way (h11's
# _state.py: "everything that affects the state machine ... lives here in this file").
#
#   conn_to_new            adopt(), and a closed slot: nothing read yet        -> READ_HEAD
#   conn_to_next_request   past a request (answered, or staged for a job)      -> READ_HEAD
#   conn_to_rejected       an error answer: nothing after it is a request      -> READ_HEAD
#   conn_to_read_body      a head whose buffered body is still arriving        -> READ_BODY
#   conn_to_handler        staged requests become a job                        -> IN_HANDLER
#   conn_to_streaming      a streaming route's or an upgrade's job             -> STREAMING
#   conn_resume            a job's answers are done: the state it came from    -> resume_state
#   conn_to_closing        lingering close: write side shut, input discarded   -> CLOSING
#   conn_to_websocket      the upgrade is answered (MSG_WS_OPEN)               -> WEBSOCKET
#
# Flags that only mean something in one state are cleared by the transitions that leave it
# (BODY_FULL by conn_to_next_request and conn_to_websocket; JOB_WAITS is only set and cleared
# while IN_HANDLER, by jobs.pyx). They are inline: one or two stores, on the path of every
# request.


cdef inline bint conn_in_handler(const fl_conn *c) noexcept nogil:
    """A handler thread (or the asyncio loop) has c's job: IN_HANDLER or STREAMING."""
    return c.state == CONN_IN_HANDLER or c.state == CONN_STREAMING


cdef inline void conn_to_new(fl_conn *c) noexcept nogil:
    """A new connection in a slot, or a slot freed by conn_close: no request yet, no flags."""
    c.state = CONN_READ_HEAD
    c.flags = 0


cdef inline void conn_to_next_request(fl_conn *c, bint close_after) noexcept nogil:
    """Past the current request: the next head is read, the header timer restarts for it
    (NEW_REQUEST), and close_after says nothing after it is a request of this connection."""
    c.state = CONN_READ_HEAD
    c.flags = (c.flags & ~(CONN_F_CONTINUE_SENT | CONN_F_BODY_FULL)) | CONN_F_NEW_REQUEST | CONN_F_USED
    if close_after:
        c.flags |= CONN_F_CLOSE_AFTER


cdef inline void conn_to_rejected(fl_conn *c) noexcept nogil:
    """An error answer is being written: nothing after it is ever parsed as a request (no
    smuggling past an error), and unread input may follow it (linger)."""
    c.state = CONN_READ_HEAD
    c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER


cdef inline void conn_to_read_body(fl_conn *c) noexcept nogil:
    """The head is parsed; its body (Content-Length or chunked) is buffered until complete."""
    c.state = CONN_READ_BODY


cdef inline void conn_to_handler(fl_conn *c, fl_job *j) noexcept nogil:
    """Complete requests went to a handler as job j: nothing more is parsed until its answers
    are done, then c takes the state it had again (conn_resume: READ_HEAD, or READ_BODY when a
    request after the staged ones is still arriving)."""
    c.resume_state = c.state
    c.state = CONN_IN_HANDLER
    c.job = j
    c.flags &= ~CONN_F_ANSWERED


cdef inline void conn_to_streaming(fl_conn *c, fl_job *j) noexcept nogil:
    """A request's head went to a handler as job j, which takes the body as it arrives (a
    streaming route), or the records once the upgrade is answered (a WebSocket). Its end goes
    through conn_to_next_request (jobs.pyx conn_answer_done) or conn_to_websocket."""
    c.state = CONN_STREAMING
    c.job = j
    c.flags &= ~CONN_F_ANSWERED


cdef inline void conn_resume(fl_conn *c) noexcept nogil:
    """The answers of an IN_HANDLER job are done: its staged requests were moved past already."""
    c.state = c.resume_state


cdef inline void conn_to_closing(fl_conn *c) noexcept nogil:
    """Lingering close: the last answer is sent and the write side shut down; what the client
    still sends is discarded until its EOF (closing.pyx conn_linger_read). Only a connection
    with CLOSE_AFTER gets here; the bit stays set, so "parse nothing more" is one bit test in
    every state."""
    c.state = CONN_CLOSING
    c.flags |= CONN_F_CLOSE_AFTER


cdef inline void conn_to_websocket(fl_conn *c, void *ws) noexcept nogil:
    """The upgrade's 101 is queued: c speaks frames from now on (ws: its fl_ws_conn). Its job,
    the application's call, goes on; BODY_FULL starts again for the records."""
    c.ws = ws
    c.state = CONN_WEBSOCKET
    c.flags &= ~CONN_F_BODY_FULL
