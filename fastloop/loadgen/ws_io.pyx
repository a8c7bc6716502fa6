# WebSocket mode of a BenchLoop (FB_CFG_WS; theory of operation at the top of loop.pyx): the
# I/O of ws.pyx's frames. The upgrade's 101 checked, then one masked message per batch whose
# echo completes it; pings answered; a close frame from the server answered with its code and
# its TCP close awaited.
#
# These are BenchLoop methods in all but syntax: Cython allows no `include` in a class body, so
# they are module functions taking the loop as `self`. They run on its thread, without the GIL.

from libc.errno cimport EAGAIN, ENOMEM, EPROTO
from libc.stdint cimport uint32_t

from fastloop.core cimport buf
from fastloop.loadgen cimport client


cdef void ws_send(BenchLoop self, fb_conn *c) noexcept nogil:
    """Writes c.wbuf until it is empty or the socket is full; counts the message under way
    as sent once its last byte is out."""
    cdef ssize_t n
    cdef size_t k
    while buf.fl_buf_len(&c.wbuf):
        # SAFETY: the live bytes of c.wbuf, which only this slot touches.
        n = client.fl_send(c.fd, buf.fl_buf_head(&c.wbuf), buf.fl_buf_len(&c.wbuf))
        if n == -EAGAIN:
            return  # the next writable edge resumes
        if n < 0:
            self.send_failed(c, <int>-n)
            return
        buf.fl_buf_consume(&c.wbuf, <size_t>n)
        self.st.bytes_out += <uint64_t>n
        if c.wmark:
            k = <size_t>n if <size_t>n < c.wmark else c.wmark
            c.wmark -= k
            if c.wmark == 0:
                self.count_sent(c, 1)
    if c.state == FB_SENDING:
        c.state = FB_RECEIVING


cdef void ws_start(BenchLoop self, fb_conn *c) noexcept nogil:
    """Queues the batch's message on an upgraded connection and starts writing it."""
    if fb_ws_queue_frame(&c.wbuf, self.ws_opcode, self.wsmsg, self.wsmsg_len, &self.rng) < 0:
        self.fail(c, self.st.err_write, ENOMEM)
        return
    c.wmark = buf.fl_buf_len(&c.wbuf)
    c.state = FB_SENDING
    self.set_deadline(c, self.now + self.cfg.timeout_ns)
    ws_send(self, c)


cdef int ws_parse(BenchLoop self, fb_conn *c) noexcept nogil:
    """parse() for WebSocket mode: the 101, then frames. Same results as parse()."""
    cdef uint32_t gen = c.gen
    cdef int rc, status
    while True:
        if c.ws.phase == FB_WS_HANDSHAKE:
            rc = fb_ws_check_handshake(&c.ws, &c.rbuf, &status)
            if rc == 0:
                return 0
            if status:
                self.st.status[status if 100 <= status < FB_NSTATUS else 0] += 1
            if rc < 0:
                self.st.ws_refused += 1
                self.fail(c, self.st.err_read, EPROTO)
                return -1
            self.st.ws_upgraded += 1
            # A message's latency is its round trip, not the connect and handshake before
            # it (in rate mode it still counts from the schedule).
            c.started_ns = self.now
            if not self.cfg.flags & FB_CFG_RATE:
                c.intended_ns = self.now
            ws_start(self, c)
            if c.gen != gen:
                return -1
            continue
        if c.ws.phase == FB_WS_CLOSED:
            buf.fl_buf_consume(&c.rbuf, buf.fl_buf_len(&c.rbuf))  # after the close: nothing
            return 0
        rc = fb_ws_step(&c.ws, &c.rbuf)
        if rc == FB_WS_MORE:
            return 0
        if rc == FB_WS_BAD:
            self.fail(c, self.st.err_read, EPROTO)
            return -1
        if rc == FB_WS_PING:
            if fb_ws_queue_frame(&c.wbuf, FB_WS_OP_PONG, c.ws.ctl, c.ws.ctl_len, &self.rng) < 0:
                self.fail(c, self.st.err_write, ENOMEM)
                return -1
            ws_send(self, c)
        elif rc == FB_WS_CLOSE:
            ws_closed_by_peer(self, c)
        elif c.nanswered < c.batch:  # FB_WS_MESSAGE: the echo (anything else is extra)
            self.complete(c)
        if c.gen != gen or c.fd < 0:
            return -1


cdef void ws_closed_by_peer(BenchLoop self, fb_conn *c) noexcept nogil:
    """The server sent a close frame: book it and the message it cut off, answer it with
    the same code (section 5.5.1) and wait for the server to close TCP first (7.1.1)."""
    cdef int code = c.ws.close_code
    cdef unsigned char echo[2]
    self.st.ws_closed += 1
    self.st.ws_close_codes[code - 1000 if 1000 <= code < 1000 + FB_NCLOSE - 1
                           else FB_NCLOSE - 1] += 1
    if c.batch > c.nanswered:
        self.st.ws_close_lost += 1
    self.settle(c, &self.st.failed)
    echo[0], echo[1] = <unsigned char>(code >> 8), <unsigned char>code
    if fb_ws_queue_frame(&c.wbuf, FB_WS_OP_CLOSE, echo, 0 if code == 1005 else 2,
                         &self.rng) < 0:
        self.fail(c, self.st.err_write, ENOMEM)
        return
    c.ws.phase = FB_WS_CLOSED
    c.state = FB_AWAIT_EOF
    self.set_deadline(c, self.now + self.cfg.timeout_ns)
    ws_send(self, c)
