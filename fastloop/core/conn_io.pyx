# A connection's I/O: its output (the write buffer, a file sent with sendfile, the answer
# messages queued behind that file), the growth of its read and write buffers, and what a failed
# recv() or send() means.
#
# These are Worker methods in all but syntax: Cython allows no `include` in a class body, so
# they are module functions taking the Worker as `self`, with the bodies they had as methods.
# They run on the worker's thread only, without the GIL, and close the connection (through
# conn_close, closing.pyx) when they fail: a caller checks c.fd (or the result) afterwards.

from libc.errno cimport EAGAIN, EINTR, ENOMEM, errno
from libc.stdint cimport SIZE_MAX
from libc.string cimport memcpy, strlen
from posix.unistd cimport close


# conn_io_failed results
cdef enum:
    FL_IO_AGAIN = 0               # EAGAIN: drained (or full) until the next edge
    FL_IO_RETRY = 1               # EINTR: try again at once
    FL_IO_CLOSED = 2              # an error: the connection is closed


cdef const char *CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef const char *CONN_CLOSE = b"Connection: close\r\n"
cdef const char *CONN_KEEP_ALIVE = b"Connection: keep-alive\r\n"


cdef inline bint fl_has_output(fl_conn *c) noexcept nogil:
    """Bytes, a file or queued answer messages still to go out on c."""
    return c.wb.start < c.wb.end or c.file_fd >= 0 or c.outq != NULL


cdef int conn_flush(Worker self, fl_conn *c) noexcept nogil:
    """Sends buffered output, then the file being sent, then what waits behind it, until
    done or EAGAIN. Returns -1 if the connection closed."""
    cdef ssize_t n
    cdef int err, end
    while True:
        while c.wb.start < c.wb.end:
            n = send(c.fd, c.wb.p + c.wb.start, c.wb.end - c.wb.start, MSG_NOSIGNAL)
            if n >= 0:
                c.wb.start += n
                self.counters.bytes_out += n
                if c.job != NULL:
                    fl_job_sent(c.job, <uint64_t>n)  # a streaming producer may go on
                continue
            err = conn_io_failed(self, c, errno)
            if err == FL_IO_RETRY:
                continue
            if err == FL_IO_CLOSED:
                return -1
            break  # EAGAIN: the next writable edge resumes
        if c.wb.start < c.wb.end:
            break
        c.wb.start = c.wb.end = 0
        if c.wb.p != NULL:
            fl_bufpool_put(&self.pool, c.wb.p, c.wb.cap)
            c.wb.p = NULL
            c.wb.cap = 0
        if c.file_fd >= 0:
            while c.file_left > 0:
                n = fl_sendfile(c.fd, c.file_fd, &c.file_off, <size_t>min(c.file_left, <int64_t>1 << 30))
                if n > 0:
                    c.file_left -= n
                    self.counters.bytes_out += n
                    if c.job != NULL:
                        fl_job_sent(c.job, <uint64_t>n)
                elif n == 0:
                    # The file shrank since its length was announced: cut the answer.
                    c.file_left = 0
                    c.file_end |= END_CLOSE | END_CUT
                elif n == -EAGAIN or n == -EWOULDBLOCK:
                    break
                elif n != -EINTR:
                    self.count_errno(self.counters.io_errors, <int>-n)
                    conn_close(self, c)
                    return -1
            if c.file_left > 0:
                break
            close(c.file_fd)
            c.file_fd = -1
            end = c.file_end
            c.file_end = 0
            if end:
                conn_answer_done(self, c, end, c.file_answered)  # may answer what follows
                if c.fd < 0:
                    return -1
            continue
        if c.outq != NULL:
            conn_pump(self, c)
            if c.fd < 0:
                return -1
            if c.wb.start < c.wb.end or c.file_fd >= 0:
                continue
        break
    if c.flags & CONN_F_JOB_WAITS:
        conn_resume_job(self, c)
    if (c.flags & CONN_F_PAUSED) and c.wb.end - c.wb.start < FL_LOW_WATER and c.file_fd < 0:
        # Room again: buffered requests are answered, and reading resumes, next turn.
        c.flags &= ~CONN_F_PAUSED
        self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
    return 0 if c.fd >= 0 else -1


cdef void conn_pump(Worker self, fl_conn *c) noexcept nogil:
    """Moves c's answer messages into its output, in order, up to the next file (which
    conn_flush sends first). The message that ends an answer lets the next request in."""
    cdef fl_msg *m
    cdef int flags, answered
    while c.outq != NULL and c.file_fd < 0 and c.fd >= 0:
        m = c.outq
        c.outq = m.next
        if c.outq == NULL:
            c.outq_tail = NULL
        flags = m.flags
        if m.kind == MSG_DATA:
            if m.off:
                # Its handler sent these bytes of the answer itself (fl_job_send).
                self.counters.bytes_out += <uint64_t>m.off
                c.flags |= CONN_F_ANSWERED
            if (flags & MSG_WS_FRAME) and c.ws != NULL and (<fl_ws_conn *>c.ws).close_sent:
                pass  # a frame after our close frame: never sent (RFC 6455 5.5.1)
            elif m.len:
                c.flags |= CONN_F_ANSWERED
                if c.wb.start == c.wb.end and m.data != NULL:
                    # Nothing else waits to be sent: the message's buffer becomes the output.
                    if c.wb.p != NULL:
                        fl_bufpool_put(&self.pool, c.wb.p, c.wb.cap)
                    c.wb.p = m.data
                    c.wb.cap = m.len
                    c.wb.start = 0
                    c.wb.end = m.len
                    m.data = NULL
                elif conn_put(self, c, m.data, m.len) < 0:
                    fl_msg_free(m)
                    return
        elif m.kind == MSG_FILE:
            c.flags |= CONN_F_ANSWERED
            c.file_fd = m.fd
            m.fd = -1
            c.file_off = m.off
            c.file_left = m.count
        elif m.kind == MSG_CONTINUE:
            # RFC 9110 10.1.1: only while it can still help: no answer begun, body to come.
            if not (c.flags & (CONN_F_ANSWERED | CONN_F_CONTINUE_SENT)) and c.body_left:
                c.flags |= CONN_F_CONTINUE_SENT
                if conn_put(self, c, CONTINUE_100, 25) < 0:
                    fl_msg_free(m)
                    return
        elif m.kind == MSG_READ:
            if c.flags & CONN_F_BODY_FULL:
                c.flags &= ~CONN_F_BODY_FULL
                self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
        elif m.kind == MSG_WS_OPEN:
            conn_ws_open(self, c, m)
        elif m.kind == MSG_WS_CLOSE:
            conn_ws_message(self, c, m)
        answered = <int>m.count
        fl_msg_free(m)
        if flags & MSG_F_END:
            if c.file_fd >= 0:
                c.file_end = flags  # applied once the file is sent
                c.file_answered = answered
            else:
                conn_answer_done(self, c, flags, answered)


cdef void conn_drop_output(Worker self, fl_conn *c) noexcept nogil:
    """Frees what c had still to send: queued messages and a file being sent."""
    cdef fl_msg *m
    while c.outq != NULL:
        m = c.outq
        c.outq = m.next
        fl_msg_free(m)
    c.outq_tail = NULL
    if c.file_fd >= 0:
        close(c.file_fd)
        c.file_fd = -1
    c.file_end = 0


cdef int conn_io_failed(Worker self, fl_conn *c, int err) noexcept nogil:
    """What a failed recv() or send() on c means: FL_IO_AGAIN (EAGAIN: wait for the next
    edge), FL_IO_RETRY (EINTR), or FL_IO_CLOSED (any other error: counted, c closed)."""
    if err == EAGAIN or err == EWOULDBLOCK:
        return FL_IO_AGAIN
    if err == EINTR:
        return FL_IO_RETRY
    self.count_errno(self.counters.io_errors, err)
    conn_close(self, c)
    return FL_IO_CLOSED


cdef inline ssize_t conn_recv(Worker self, fl_conn *c, size_t *space) noexcept nogil:
    """One read into c's read buffer, grown as needed (space: the room it had): the bytes
    read, counted; 0 at EOF; -1 when nothing more is to be read now (EAGAIN) or c was closed
    (no memory, or an error: counted). The three read loops of a connection (requests, a
    streaming body, WebSocket frames) read through here."""
    cdef ssize_t n
    while True:
        if rbuf_ensure(self, c, 1) < 0:
            self.count_errno(self.counters.io_errors, ENOMEM)
            conn_close(self, c)
            return -1
        space[0] = c.rb.cap - c.rb.end
        n = recv(c.fd, c.rb.p + c.rb.end, space[0], 0)
        if n > 0:
            c.rb.end += <uint32_t>n
            self.counters.bytes_in += n
            return n
        if n == 0:
            return 0
        if conn_io_failed(self, c, errno) != FL_IO_RETRY:
            return -1  # EAGAIN: drained; anything else closed c


cdef inline bint conn_read_budget_spent(Worker self, fl_conn *c, int64_t *budget, ssize_t n) noexcept nogil:
    """Counts n bytes read from c against this turn's budget (FL_READ_BUDGET); once it is
    spent, c is queued to read on next turn, so one busy client cannot hold the loop, and
    the read loop stops (True)."""
    budget[0] -= n
    if budget[0] > 0:
        return False
    self.queue(&self.resume, &self.nresume, &self.cap_resume, c)
    return True


cdef int rbuf_ensure(Worker self, fl_conn *c, size_t need) noexcept nogil:
    """Makes room for need more bytes after c.rb.end. Returns 0, or -1 when out of memory."""
    # SAFETY: compacting moves the live bytes: the parsed spans of earlier requests are no
    # longer referenced, and staged requests are copied out first (conn_process).
    return -1 if fl_bufpool_reserve(&self.pool, &c.rb, need, FL_RBUF_MAX) < 0 else 0


cdef int conn_reserve(Worker self, fl_conn *c, size_t need) noexcept nogil:
    """Makes room for need more output bytes. Returns 0, or -1 (and closes c) without memory."""
    if fl_bufpool_reserve(&self.pool, &c.wb, need, SIZE_MAX) < 0:
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return -1
    return 0


cdef inline void put_raw(Worker self, fl_conn *c, const char *p, size_t n) noexcept nogil:
    # Only after conn_reserve made room.
    memcpy(c.wb.p + c.wb.end, p, n)
    c.wb.end += n


cdef int conn_put(Worker self, fl_conn *c, const char *p, size_t n) noexcept nogil:
    if conn_reserve(self, c, n) < 0:
        return -1
    put_raw(self, c, p, n)
    return 0


cdef const char *conn_header(Worker self, int flags) noexcept nogil:
    """The Connection header this answer needs: close, keep-alive (HTTP/1.0), or none."""
    if not (flags & FL_REQ_KEEP_ALIVE) or self.stop_phase != FL_STOP_NONE:
        return CONN_CLOSE
    if flags & FL_REQ_HTTP10:
        return CONN_KEEP_ALIVE
    return b""


cdef int conn_put_static(Worker self, fl_conn *c, fl_static *s, int flags) noexcept nogil:
    cdef const char *ch = conn_header(self, flags)
    cdef size_t chlen = strlen(ch)
    cdef size_t body = 0 if flags & FL_REQ_HEAD else s.body_len
    if conn_reserve(self, c, s.head_len + FL_DATE_LINE_LEN + chlen + 2 + body) < 0:
        return -1
    put_raw(self, c, s.head, s.head_len)
    put_raw(self, c, self.date_line, FL_DATE_LINE_LEN)
    put_raw(self, c, ch, chlen)
    put_raw(self, c, b"\r\n", 2)
    put_raw(self, c, s.body, body)
    return 0


cdef void release_buffers(Worker self, fl_conn *c) noexcept nogil:
    # An idle connection holds no read buffer: thousands of idle clients cost little.
    if c.rb.p != NULL and c.rb.start == c.rb.end:
        fl_bufpool_put(&self.pool, c.rb.p, c.rb.cap)
        c.rb.p = NULL
        c.rb.cap = 0
        c.rb.start = c.rb.end = 0
