# A WebSocket connection in its loop: the upgrade handed to the application, then frames
# instead of requests (RFC 6455), read and answered by the engine of ws.pyx without the GIL.
#
# Theory of operation. A valid upgrade request (ws_handshake.pyx checks it) becomes a job like a
# streaming route's, marked FL_REQ_WEBSOCKET; the application (asgi_ws.pyx) accepts it by
# posting the 101 then MSG_WS_OPEN, or answers it with plain HTTP. From MSG_WS_OPEN on the
# connection is CONN_WEBSOCKET: the loop parses frames as they arrive and hands each message
# piece to the job as a record (below), through the same body channel, with the same
# backpressure, as a streaming request body: past FL_HIGH_WATER untaken the loop stops reading
# and TCP slows the client down. Pings are answered here; the application never sees them.
#
# Closing. The loop owns the close frames (one per connection, whoever starts). A close from the
# peer, or a frame that fails the connection, is handed to the application as a close record
# after the messages before it, and reading stops; the close frame answering it goes out when
# the application has taken that record (MSG_WS_CLOSE with code 0), so that what it sends in
# reply to the messages before still precedes it; or when the application's job ends, or when
# FL_TIMER_WS_CLOSE runs out for an application that does not read. A close the application
# starts (MSG_WS_CLOSE with its code) goes out at once, and the loop reads on, dropping
# messages, until the peer's close or the same timer. The connection then closes, the server
# first (RFC 6455 7.1.1), lingering so that nothing unread resets the close frame away.
#
# A quiet connection is pinged when FL_TIMER_WS_PING runs out, and closed when its pong does
# not come within FL_TIMER_WS_PONG (both off when the ws_ping timeout is 0).
#
# These are Worker methods in all but syntax (see jobs.pyx), on the worker's thread, nogil.

cimport cython
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset


cdef enum:
    FL_WS_RECORD_HEAD = 6         # a record: kind (1 byte), flags (1 byte), length (4, little-endian)
    FL_WS_REC_FIN = 1             # record flags: this piece ends its message
    FL_WS_REC_FAILED = 2          # a close record for a connection the server failed (the code is ours)
    FL_WS_REC_ABNORMAL = 4        # a close record for a peer gone without a close frame (1006)
    FL_WS_ROOM = 65536            # inflated bytes handed over per step


# The records a WebSocket job's body carries, in order: FL_WS_TEXT / FL_WS_BINARY pieces of a
# message (FL_WS_REC_FIN on its last), then at most one FL_WS_CLOSE record whose payload is the
# close frame's (2-byte code and reason; empty: no code) and which ends the body.

ctypedef struct fl_ws_conn:
    fl_ws_parser parser
    fl_ws_inflater *inflater      # only with permessage-deflate (its zlib state: at first use)
    int close_code                # the code our close frame carries (FL_WS_NO_STATUS: none)
    bint close_sent               # our close frame is written
    bint close_rcvd               # the peer's close frame came, or the connection failed
    bint ping_sent                # a ping waits for its pong


@cython.linetrace(False)  # holds a lock of handoff.pyx: see there
@cython.profile(False)
cdef int fl_job_give_record(fl_job *j, int kind, int flags, const uint8_t *p, size_t n) noexcept nogil:
    """The loop's side of a WebSocket job: appends one record (a close record ends the body).
    Returns 1 when the application holds FL_HIGH_WATER or more untaken, 0, or -1 without
    memory."""
    cdef size_t need = FL_WS_RECORD_HEAD + n
    cdef char *at
    cdef int rc
    pthread_mutex_lock(&j.lock)
    if fl_job_body_reserve(j, need, 4096) < 0:
        pthread_mutex_unlock(&j.lock)
        return -1
    at = j.body + j.body_n
    at[0] = <char>kind
    at[1] = <char>flags
    at[2] = <char>(n & 0xff)
    at[3] = <char>((n >> 8) & 0xff)
    at[4] = <char>((n >> 16) & 0xff)
    at[5] = <char>((n >> 24) & 0xff)
    if n:
        memcpy(at + FL_WS_RECORD_HEAD, p, n)
    j.body_n += need
    if kind == FL_WS_CLOSE:
        j.body_end = 1
    rc = fl_job_body_given(j)
    pthread_mutex_unlock(&j.lock)
    return rc


cdef int conn_ws_upgrade(Worker self, fl_conn *c) noexcept nogil:
    """Hands a valid upgrade request (its head) to the application as a WebSocket job. The
    connection waits IN_HANDLER, reading nothing, until the application accepts (MSG_WS_OPEN)
    or answers with HTTP. 0, or -1 (closed)."""
    cdef fl_job *j = fl_job_new(self.inbox, fl_token(c), c.fd, 0, 1)
    if j != NULL:
        # The head apart from the job: the application frees it once accepted, as a long-lived
        # WebSocket does not need it (asgi_ws.pyx; its scope has its own copy of the fields).
        j.req = <char *>malloc(c.head_len)
        if j.req == NULL:
            fl_job_release(j)
            fl_job_release(j)
            j = NULL
        else:
            j.req_apart = 1
    if j == NULL:
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return -1
    # SAFETY: the head is complete in c.rb.p from rb.start; copied, so the buffer may move.
    memcpy(j.req, c.rb.p + c.rb.start, c.head_len)
    c.req_flags |= FL_REQ_WEBSOCKET
    j.reqs[0].off = 0
    j.reqs[0].head_len = c.head_len
    j.reqs[0].body_len = 0
    j.reqs[0].line = c.line
    j.reqs[0].req_flags = c.req_flags
    j.stream = 1  # its body is the records, once open
    conn_to_streaming(c, j)
    c.rb.start += c.head_len  # what follows the head is frames
    c.body_left = 0
    c.body_len = 0
    c.req_len = 0
    if self.ws_pool != NULL:
        # An App's WebSocket route: to the asyncio loop of its WebSocket handlers, at once (an
        # upgrade is rare next to requests; this turn's batch goes to the handler threads).
        j.pool = self.ws_pool
        fl_pool_push(self.ws_pool, j, j, 1)
    else:
        queue_job(self, j, False)  # frames and pings of the loop's own may come first
    return 0


cdef void conn_ws_open(Worker self, fl_conn *c, fl_msg *m) noexcept nogil:
    """MSG_WS_OPEN: the 101 is queued before it; c speaks frames from now on. m.count is the
    largest message, m.off the deflate settings (bit 8: on; bits 0-7: the client's window;
    bit 9: the client resets its window after each message)."""
    cdef fl_ws_conn *ws
    if not conn_in_handler(c) or c.ws != NULL:
        return
    ws = <fl_ws_conn *>malloc(sizeof(fl_ws_conn))
    if ws == NULL:
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return
    memset(ws, 0, sizeof(fl_ws_conn))
    fl_ws_parser_init(&ws.parser, <uint64_t>m.count, FL_WS_DEFLATE if m.off & 0x100 else 0)
    if m.off & 0x100:
        # (Apart: a connection that never compresses, most of them, does not carry it.)
        ws.inflater = <fl_ws_inflater *>malloc(sizeof(fl_ws_inflater))
        if ws.inflater == NULL:
            free(ws)
            self.count_errno(self.counters.io_errors, ENOMEM)
            conn_close(self, c)
            return
        fl_ws_inflater_init(ws.inflater, <int>(m.off & 0xff), (m.off & 0x200) != 0)
    ws.close_code = FL_WS_NO_STATUS
    conn_to_websocket(c, ws)
    self.counters.ws_opened += 1
    # Frames may have come with the head, or an edge gone unread while the app decided.
    self.queue(&self.resume, &self.nresume, &self.cap_resume, c)


cdef void conn_ws_free(fl_conn *c) noexcept nogil:
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    if ws != NULL:
        if ws.inflater != NULL:
            fl_ws_inflater_free(ws.inflater)
            free(ws.inflater)
        free(ws)
        c.ws = NULL


cdef int conn_ws_give(Worker self, fl_conn *c, int kind, int flags, const uint8_t *p, size_t n) noexcept nogil:
    """A record for the application, if it still runs. 1: stop reading (it holds enough),
    0, or -1 (closed: no memory)."""
    cdef int rc
    if c.job == NULL:
        return 0
    rc = fl_job_give_record(c.job, kind, flags, p, n)
    if rc < 0:
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return -1
    if rc:
        c.flags |= CONN_F_BODY_FULL
    return rc


cdef int conn_ws_put_frame(Worker self, fl_conn *c, int opcode, const uint8_t *p, size_t n) noexcept nogil:
    """A control frame of the loop's own (pong, ping, close payload already built)."""
    if conn_reserve(self, c, 2 + FL_WS_MAX_CONTROL) < 0:
        return -1
    c.wb.end += <size_t>fl_ws_write_control(<uint8_t *>c.wb.p + c.wb.end, opcode, p, n)
    return 0


cdef void conn_ws_close(Worker self, fl_conn *c, int code, const uint8_t *reason, size_t n) noexcept nogil:
    """Writes our close frame, once (code FL_WS_NO_STATUS: a frame without a code); once the
    peer's close is in too, the connection ends after it is flushed."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    if not ws.close_sent:
        ws.close_sent = True
        if n > FL_WS_MAX_CONTROL - 2:
            n = FL_WS_MAX_CONTROL - 2
        if conn_reserve(self, c, 2 + FL_WS_MAX_CONTROL) < 0:
            return
        c.wb.end += <size_t>fl_ws_write_close(<uint8_t *>c.wb.p + c.wb.end,
                                              0 if code == FL_WS_NO_STATUS else code, reason, n)
    if ws.close_rcvd:
        c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER


cdef void conn_ws_peer_closed(Worker self, fl_conn *c, int code, int flags, const uint8_t *reason,
                              size_t n) noexcept nogil:
    """The peer's close frame (code, FL_WS_NO_STATUS for none, and reason), or the connection
    failed (our code, FL_WS_REC_FAILED) or ended without one: the application gets the close
    record; our close answers it once the application has taken it (MSG_WS_CLOSE), its job
    ended, or FL_TIMER_WS_CLOSE ran out."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    cdef uint8_t payload[FL_WS_MAX_CONTROL]
    cdef size_t k = 0
    ws.close_rcvd = True
    if ws.close_code == FL_WS_NO_STATUS:
        ws.close_code = code
    if code != FL_WS_NO_STATUS:
        payload[0] = <uint8_t>(code >> 8)
        payload[1] = <uint8_t>(code & 0xff)
        k = 2
        if n > FL_WS_MAX_CONTROL - 2:
            n = FL_WS_MAX_CONTROL - 2
        if n:
            memcpy(payload + 2, reason, n)
            k += n
    if ws.close_sent or c.job == NULL:
        conn_ws_close(self, c, ws.close_code, NULL, 0)  # (our close went first: done)
    else:
        conn_ws_give(self, c, FL_WS_CLOSE, flags, payload, k)


cdef int conn_ws_inflate(Worker self, fl_conn *c, fl_ws_event *ev) noexcept nogil:
    """A compressed piece, inflated into records. 0, 1 (stop reading), or -close code."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    cdef size_t produced
    cdef int rc, full = 0
    if self.ws_room == NULL:
        self.ws_room = <uint8_t *>malloc(FL_WS_ROOM)
        if self.ws_room == NULL:
            return -FL_WS_INTERNAL_ERROR
    rc = fl_ws_inflate_begin(ws.inflater, ev.data, ev.len, ev.fin)
    while rc >= 0:
        rc = fl_ws_inflate_step(ws.inflater, &ws.parser, self.ws_room, FL_WS_ROOM, &produced)
        if rc < 0:
            break
        if (produced or (rc == 0 and ev.fin)) and not ws.close_sent:
            full = conn_ws_give(self, c, ev.opcode, FL_WS_REC_FIN if rc == 0 and ev.fin else 0,
                                self.ws_room, produced)
            if full < 0:
                return 1  # closed
        if rc == 0:
            return full
    return rc


cdef int conn_ws_frames(Worker self, fl_conn *c) noexcept nogil:
    """Parses the frames buffered in c.rb and acts on each. Returns 0 to read on, 1 to stop
    reading (the application holds enough, the connection is closing, or closed)."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    cdef fl_ws_event ev
    cdef Py_ssize_t used
    cdef int rc = 0
    while c.rb.start < c.rb.end:
        used = fl_ws_parse(&ws.parser, <uint8_t *>c.rb.p + c.rb.start, c.rb.end - c.rb.start, &ev)
        c.rb.start += <uint32_t>used
        if ev.type == FL_WS_EV_NONE:
            break
        if ev.type == FL_WS_EV_DATA:
            if ws.close_sent:
                rc = 0  # after our close the peer's messages are dropped (RFC 6455 1.4)
            elif ev.compressed:
                rc = conn_ws_inflate(self, c, &ev)
                if rc < 0:
                    fl_ws_inflate_failed(&ws.parser, &ev, rc)
                    conn_ws_failed(self, c, &ev)
                    break
            elif ev.len or ev.fin:
                rc = conn_ws_give(self, c, ev.opcode, FL_WS_REC_FIN if ev.fin else 0, ev.data, ev.len)
            if c.fd < 0:
                return 1
            if rc:
                break  # the rest waits in the buffer for MSG_READ
        elif ev.type == FL_WS_EV_PING:
            if not ws.close_sent and conn_ws_put_frame(self, c, FL_WS_PONG, ev.data, ev.len) < 0:
                return 1
        elif ev.type == FL_WS_EV_PONG:
            ws.ping_sent = False
        elif ev.type == FL_WS_EV_CLOSE:
            conn_ws_peer_closed(self, c, ev.code, 0, ev.data, ev.len)
            break
        else:
            conn_ws_failed(self, c, &ev)
            break
    if c.fd < 0:
        return 1
    if c.rb.start == c.rb.end:
        c.rb.start = c.rb.end = 0
    return 1 if rc or ws.close_rcvd else 0


cdef void conn_ws_failed(Worker self, fl_conn *c, fl_ws_event *ev) noexcept nogil:
    """A frame broke the protocol (ev: the ERROR event): counted, noted for the DEBUG log, and
    the connection failed with its close code (RFC 6455 7.1.7)."""
    cdef int code = ev.code
    self.counters.ws_errors[fl_ws_error_slot(code)] += 1
    note(self, FL_NOTE_WS + code)
    c.rb.start = c.rb.end = 0  # nothing after the bad byte is read (sticky in the parser)
    conn_ws_peer_closed(self, c, code, FL_WS_REC_FAILED, NULL, 0)


cdef inline int fl_ws_error_slot(int code) noexcept nogil:
    if code == FL_WS_PROTOCOL_ERROR:
        return 0
    if code == FL_WS_INVALID_DATA:
        return 1
    if code == FL_WS_TOO_BIG:
        return 2
    return 3


cdef void conn_ws_read(Worker self, fl_conn *c, int mask) noexcept nogil:
    """Reads and parses frames until EAGAIN, the read budget, the application holding enough
    (MSG_READ resumes), or a close."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    cdef ssize_t n
    cdef size_t space
    cdef int64_t budget = FL_READ_BUDGET
    if c.flags & (CONN_F_BODY_FULL | CONN_F_CLOSE_AFTER) or ws.close_rcvd:
        c.flags |= CONN_F_READ_MORE
        return
    if c.rb.start < c.rb.end and conn_ws_frames(self, c):
        c.flags |= CONN_F_READ_MORE
        return
    while True:
        n = conn_recv(self, c, &space)
        if n > 0:
            if conn_ws_frames(self, c):
                if c.fd >= 0:
                    c.flags |= CONN_F_READ_MORE
                return
            if conn_read_budget_spent(self, c, &budget, n):
                return
        elif n == 0:
            # Gone without a close frame: the application hears 1006 (RFC 6455 7.1.5).
            c.flags |= CONN_F_PEER_EOF
            if not ws.close_rcvd:
                conn_ws_peer_closed(self, c, 1006, FL_WS_REC_ABNORMAL, NULL, 0)
            ws.close_sent = True  # (no close frame is owed to a peer that left)
            c.flags |= CONN_F_CLOSE_AFTER
            return
        else:
            return  # EAGAIN: drained; anything else closed c


cdef void conn_ws_message(Worker self, fl_conn *c, fl_msg *m) noexcept nogil:
    """MSG_WS_CLOSE from the application: its close (m.count: the code, m.data: the reason),
    or (code 0) the close record was taken: answer the peer's close now."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    if ws == NULL:
        return
    if m.count == 0 or ws.close_rcvd:
        conn_ws_close(self, c, ws.close_code, NULL, 0)
    else:
        conn_ws_close(self, c, <int>m.count, <const uint8_t *>m.data, m.len)


cdef void conn_ws_job_done(Worker self, fl_conn *c) noexcept nogil:
    """The application's call ended (MSG_END): its close went out before, or one goes now."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    cdef fl_job *j = c.job
    c.job = NULL
    if j != NULL:
        fl_job_release(j)
    c.flags &= ~CONN_F_BODY_FULL
    conn_ws_close(self, c, ws.close_code if ws.close_rcvd else FL_WS_NORMAL, NULL, 0)


cdef void conn_ws_going_away(Worker self) noexcept nogil:
    """The server stops: every open WebSocket gets our close (1001, RFC 6455 7.4.1) now, so
    that its peer's close, and so its end, comes within the stop's grace."""
    cdef uint32_t i
    cdef fl_conn *c
    for i in range(self.nslots):
        c = self.slots[i]
        if c.fd >= 0 and c.state == CONN_WEBSOCKET and not (<fl_ws_conn *>c.ws).close_sent:
            conn_ws_close(self, c, FL_WS_GOING_AWAY, <const uint8_t *>b"server stopping", 15)
            conn_settle(self, c)


cdef void conn_ws_settle(Worker self, fl_conn *c) noexcept nogil:
    """conn_settle for an open WebSocket without output: the timer it needs."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    release_buffers(self, c)  # a quiet WebSocket holds no read buffer (idle ones cost little)
    if ws.close_sent or ws.close_rcvd:
        if c.timer != FL_TIMER_WS_CLOSE:
            fl_timer_set(&self.timers, c, FL_TIMER_WS_CLOSE, self.now_ms)  # not restarted
    elif not self.ws_ping:
        fl_timer_unlink(&self.timers, c)  # a WebSocket may be quiet for as long as it likes
    elif ws.ping_sent:
        if c.timer != FL_TIMER_WS_PONG:
            fl_timer_set(&self.timers, c, FL_TIMER_WS_PONG, self.now_ms)
    else:
        fl_timer_set(&self.timers, c, FL_TIMER_WS_PING, self.now_ms)  # restarted by traffic


cdef bint conn_ws_timer(Worker self, fl_conn *c, int kind) noexcept nogil:
    """A WebSocket timer ran out. Returns True when it was handled (the connection lives on:
    a ping went out, or our close answers a peer whose application did not read it)."""
    cdef fl_ws_conn *ws = <fl_ws_conn *>c.ws
    cdef uint8_t payload[4]
    if ws == NULL:
        return False
    if kind == FL_TIMER_WS_PING:
        memcpy(payload, b"ping", 4)
        if conn_ws_put_frame(self, c, FL_WS_PING, payload, 4) == 0:
            ws.ping_sent = True
            conn_settle(self, c)
        return True
    if kind == FL_TIMER_WS_CLOSE and ws.close_rcvd and not ws.close_sent:
        conn_ws_close(self, c, ws.close_code, NULL, 0)
        conn_settle(self, c)
        return True
    return False
