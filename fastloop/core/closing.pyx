# What becomes of a connection after an event: conn_settle flushes it, then puts it on the
# timer its state needs, lingers (shuts down writing and drains its input) or closes it;
# conn_close closes it exactly once; conn_linger_read drains a lingering one; timers_expire
# acts on the timers that ran out (the lists are timers.pyx); begin_stop and close_idle are the
# graceful stop, end_loop what follows the last turn; refuse and drop_fd close a descriptor
# that adopt() could not take.
#
# These are Worker methods in all but syntax: Cython allows no `include` in a class body, so
# they are module functions taking the Worker as `self`, with the bodies they had as methods.
# They run on the worker's thread only, without the GIL.

from libc.errno cimport EAGAIN, EINTR, ENOMEM, errno
from posix.unistd cimport close


cdef void conn_settle(Worker self, fl_conn *c) noexcept nogil:
    """After c was served: flush, then close it or put it on the timer its state needs."""
    if c.fd < 0 or (fl_has_output(c) and conn_flush(self, c) < 0):
        return
    if fl_has_output(c):
        # Progress (or new output) restarts the clock.
        fl_timer_set(&self.timers, c, FL_TIMER_WRITE, self.now_ms)
        return
    if c.state == CONN_CLOSING:
        return
    if conn_in_handler(c):
        # Its answer is still to come, even when the client stopped sending (half-close).
        if c.state == CONN_STREAMING and c.body_left and \
                not (c.flags & (CONN_F_BODY_FULL | CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER)):
            fl_timer_set(&self.timers, c, FL_TIMER_BODY, self.now_ms)  # the client owes body
        else:
            fl_timer_unlink(&self.timers, c)  # the handler's time is its own
        return
    if c.flags & CONN_F_CLOSE_AFTER:
        # Linger when input may be left unread, buffered or still in the socket (reading
        # stopped for a handler, or a client pipelining into a graceful stop): closing then
        # would reset the answers away (RFC 9112 9.6).
        if (c.flags & (CONN_F_LINGER | CONN_F_PEER_EOF)) == CONN_F_LINGER or \
                ((c.rb.start < c.rb.end or (c.flags & CONN_F_READ_MORE) or self.stopping)
                 and not (c.flags & CONN_F_PEER_EOF)):
            shutdown(c.fd, SHUT_WR)
            conn_to_closing(c)
            release_buffers(self, c)
            fl_timer_set(&self.timers, c, FL_TIMER_LINGER, self.now_ms)
            self.conn_read(c, 0)  # the client may have closed already
        else:
            conn_close(self, c)
        return
    if c.state == CONN_WEBSOCKET:
        conn_ws_settle(self, c)
        return
    if c.state == CONN_READ_BODY:
        fl_timer_set(&self.timers, c, FL_TIMER_BODY, self.now_ms)  # restarted by progress
    elif c.rb.start < c.rb.end:
        if c.timer != FL_TIMER_HEADER or (c.flags & CONN_F_NEW_REQUEST):
            # Not restarted by each byte (slowloris).
            fl_timer_set(&self.timers, c, FL_TIMER_HEADER, self.now_ms)
    else:
        if self.stop_phase == FL_STOP_GRACE_OVER and (c.flags & CONN_F_USED):
            conn_close(self, c)
            return
        release_buffers(self, c)
        fl_timer_set(&self.timers, c, FL_TIMER_IDLE, self.now_ms)
    c.flags &= ~CONN_F_NEW_REQUEST


cdef void conn_close(Worker self, fl_conn *c) noexcept nogil:
    """Closes c exactly once and frees its slot; later events for it become stale."""
    if c.fd < 0:
        return
    fl_timer_unlink(&self.timers, c)
    if c.job != NULL:
        # Its handler is still running: it stops waiting, and what it posts is dropped.
        self.counters.aborted += 1
        fl_job_gone(c.job)  # before close(): the descriptor number may be reused at once
        c.job = NULL
    conn_drop_output(self, c)
    conn_ws_free(c)
    close(c.fd)  # also removes it from the poller
    c.fd = -1
    c.gen += 1
    conn_to_new(c)
    c.rb.start = c.rb.end = c.scanned = 0
    c.wb.start = c.wb.end = 0
    release_buffers(self, c)
    if c.wb.p != NULL:
        fl_bufpool_put(&self.pool, c.wb.p, c.wb.cap)
        c.wb.p = NULL
        c.wb.cap = 0
    self.counters.closed += 1
    self.counters.open -= 1
    if self.open_total != NULL:
        fl_atomic_add(self.open_total, -1)
    self.free_slots[self.nfree] = c.slot
    self.nfree += 1


cdef void timers_expire(Worker self, int64_t now) noexcept nogil:
    """Closes the connections whose deadline is now or earlier."""
    cdef int kind
    cdef fl_conn *c
    for kind in range(1, FL_NTIMERS):
        while True:
            c = fl_timer_pop(&self.timers, kind, now)  # off the list even if closing fails
            if c == NULL:
                break
            if kind >= FL_TIMER_WS_CLOSE and conn_ws_timer(self, c, kind):
                continue  # a ping went out, or a close frame: not a timeout
            self.counters.timeouts[kind] += 1
            note(self, -kind)
            if kind == FL_TIMER_BODY and conn_in_handler(c):
                # A streaming route's client stopped sending its body: its handler's read
                # fails with 408, and the connection closes after the handler's answer.
                fl_job_give_body(c.job, NULL, 0, -408)
                c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
                continue
            if (kind == FL_TIMER_HEADER or kind == FL_TIMER_BODY) and c.rb.start < c.rb.end:
                # Best effort: one send of a 408, then close, whether it went out or not.
                note_rejected(self, c, 408)
                self.conn_put_error(c, 408)
                if c.fd >= 0:
                    conn_flush(self, c)
            conn_close(self, c)


cdef void begin_stop(Worker self) noexcept nogil:
    """Graceful stop. Connections still queued on the listener are taken (closing it would
    reset them), then it is closed. Busy connections close once their answers (marked
    Connection: close) are sent. Idle ones, new or kept alive, get FL_FRESH_GRACE_MS to
    send a request, which is answered with Connection: close: a keep-alive client whose
    last answer went out just before the stop sends its next request at once, and closing
    then would reset it (RFC 9112 9.6). At the end of the grace the idle ones are read
    once more and closed: only a request sent at that instant races the close. Whatever
    remains closes at the deadline."""
    if self.listener.fd >= 0:
        self.accept_all()
    self.close_listener()
    self.stop_phase = FL_STOP_BEGUN
    # Answers from now on say Connection: close; handler threads read it (core/atomic.h).
    fl_atomic_store_int(&self.inbox.stopping, 1)
    close_idle(self, False)
    conn_ws_going_away(self)


cdef void close_idle(Worker self, bint fresh_too) noexcept nogil:
    cdef uint32_t i
    cdef fl_conn *c
    for i in range(self.nslots):
        c = self.slots[i]
        if c.fd < 0 or c.state != CONN_READ_HEAD or c.rb.start != c.rb.end or fl_has_output(c):
            continue
        self.conn_read(c, FL_HUP)
        if c.fd < 0 or conn_in_handler(c):
            continue
        if fresh_too and not (c.flags & CONN_F_USED) and c.state == CONN_READ_HEAD \
                and c.rb.start == c.rb.end and c.wb.start == c.wb.end:
            conn_close(self, c)
        else:
            conn_settle(self, c)  # closes it if idle after a request, answers otherwise


cdef void conn_linger_read(Worker self, fl_conn *c) noexcept nogil:
    """Lingering close (CONN_CLOSING): the answer is sent and the write side shut; swallow what
    the client still sends, so that closing does not reset the answer away (RFC 9112 9.6), and
    close at its EOF (or an error)."""
    cdef char discard[4096]
    cdef ssize_t n
    while True:
        n = recv(c.fd, discard, sizeof(discard), 0)
        if n > 0:
            self.counters.bytes_in += n
            continue
        if n < 0 and errno == EINTR:
            continue
        if n == 0 or errno != EAGAIN:
            conn_close(self, c)
        return


cdef void end_loop(Worker self) noexcept nogil:
    """The loop has stopped: whatever is still open closes, jobs made but never queued are
    released, and answers still coming are dropped from now on."""
    cdef uint32_t i
    cdef fl_job *j
    take_inbox(self)  # in transit from the acceptor: registered, then closed with the rest
    for i in range(self.nslots):
        if self.slots[i].fd >= 0:
            conn_close(self, self.slots[i])
    while self.jobs_first != NULL:  # made by the last messages, never queued
        j = self.jobs_first
        self.jobs_first = j.next
        fl_job_release(j)
    self.jobs_last = NULL
    self.njobs = 0
    fl_inbox_close(self.inbox)  # answers still coming are dropped and counted
    self.close_listener()
    if self.nevents_to_log or self.nrejected_to_log:
        # The last turns' rejections and timeouts: the loop ended before the wait that
        # would have logged them.
        with gil:
            flush_notes(self)


cdef void refuse(Worker self, int fd) noexcept nogil:
    """Over limit_concurrency: one best-effort 503, then close (counted as a rejection)."""
    cdef char buf[512]
    cdef fl_static *s = &fl_error_responses[fl_status_index(503)]
    if fl_error_len(s) <= sizeof(buf):
        send(fd, buf, fl_put_error(buf, s, self.date_line), MSG_NOSIGNAL)
        shutdown(fd, SHUT_WR)
        # Whatever the client already sent would turn the close into a reset that can
        # destroy the 503 in flight: swallow what is there (without waiting for more).
        while recv(fd, buf, sizeof(buf), 0) > 0:
            pass
    self.counters.rejected[fl_status_index(503)] += 1
    note(self, 503)
    close(fd)
    self.counters.closed += 1
    self.counters.open -= 1


cdef void drop_fd(Worker self, int fd) noexcept nogil:
    """adopt() could not make room for fd: close it, counted as an ENOMEM I/O error."""
    close(fd)
    self.counters.closed += 1
    self.counters.open -= 1
    if self.open_total != NULL:
        fl_atomic_add(self.open_total, -1)
    self.count_errno(self.counters.io_errors, ENOMEM)
