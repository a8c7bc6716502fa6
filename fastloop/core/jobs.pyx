# The loop's side of the hand-off to the handler threads: requests staged into jobs
# (conn_stage, conn_end_process, queue_job; a streaming route's job with conn_start_job, its body
# after it with conn_deliver_body and conn_read_body), and answers taken from the inbox and
# applied (take_inbox, take_messages; conn_answer_done, conn_resume_job). What loops and handler
# threads share (inbox, messages, jobs, the pool) is handoff.pyx; this is one worker's use of it.
#
# These are Worker methods in all but syntax: Cython allows no `include` in a class body, so
# they are module functions taking the Worker as `self`, with the bodies they had as methods.
# They run on the worker's thread only, without the GIL.

from libc.errno cimport ENOMEM, errno
from libc.stdlib cimport free
from libc.string cimport memcpy


cdef void take_inbox(Worker self) noexcept nogil:
    cdef int *fds
    cdef int n, i
    cdef fl_msg *m = fl_inbox_take(self.inbox, &fds, &n)
    for i in range(n):
        self.counters.accepted += 1
        self.counters.open += 1
        self.adopt(fds[i])
    free(fds)
    if m != NULL:
        take_messages(self, m)


cdef void take_messages(Worker self, fl_msg *m) noexcept nogil:
    """Appends each answer message to its connection's queue, in order, then writes each
    connection touched once: answers that arrived together leave together."""
    cdef fl_msg *nxt
    cdef fl_conn *c
    cdef fl_conn *touched = NULL
    while m != NULL:
        nxt = m.next
        m.next = NULL
        c = self.conn_for(m.token)
        if c == NULL or c.job == NULL:
            self.counters.late += 1  # its connection closed (or its answer was cut) meanwhile
            fl_msg_free(m)
        else:
            if c.outq_tail != NULL:
                c.outq_tail.next = m
            else:
                c.outq = m
                self.queue(&self.touched, &self.ntouched, &self.cap_touched, c)
            c.outq_tail = m
        m = nxt
    for i in range(self.ntouched):
        c = self.conn_for(self.touched[i])
        if c != NULL and c.outq != NULL:
            conn_pump(self, c)
            if c.fd >= 0:
                conn_settle(self, c)
    self.ntouched = 0


cdef int conn_stage(Worker self, fl_conn *c) noexcept nogil:
    """Adds c's current request (complete) to the job being gathered and moves past it,
    as consume() would, but without counting it (its answer is not there yet)."""
    cdef fl_jobreq *q = &self.stage[self.nstage]
    q.off = c.rb.start
    q.head_len = c.head_len
    q.body_len = c.body_len
    q.line = c.line
    q.req_flags = c.req_flags
    self.nstage += 1
    self.stage_bytes += c.head_len + c.body_len
    self.conn_past_request(c)  # its bytes stay where they are until conn_end_process
    return 0


cdef int conn_end_process(Worker self, fl_conn *c, int rc) noexcept nogil:
    """conn_process returns through here: staged requests become one job, copied out of
    the buffer before anything can move it. Returns FL_PROC_PY then, else rc."""
    cdef fl_job *j
    cdef fl_jobreq *q
    cdef size_t at = 0
    cdef int i
    if self.nstage == 0:
        return rc
    j = fl_job_new(self.inbox, fl_token(c), c.fd, self.stage_bytes, self.nstage)
    if j == NULL:
        self.nstage = 0
        self.stage_bytes = 0
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return FL_PROC_STOP
    for i in range(self.nstage):
        q = &j.reqs[i]
        q[0] = self.stage[i]
        # SAFETY: each staged request is complete in c.rb.p at q.off (head, then its
        # decoded body): nothing moved the buffer since conn_stage (see conn_process).
        memcpy(j.req + at, c.rb.p + q.off, q.head_len + q.body_len)
        q.off = <uint32_t>at
        at += q.head_len + q.body_len
    self.nstage = 0
    self.stage_bytes = 0
    conn_to_handler(c, j)
    queue_job(self, j, not fl_has_output(c))
    return FL_PROC_PY


cdef void queue_job(Worker self, fl_job *j, bint direct) noexcept nogil:
    """Queues j at the end of this turn. direct: nothing is unsent on its connection, so its
    handler may send the answer itself (fl_job_send). The job is the loop's alone here: it
    is on no queue, and its handler's reference, if it had one, was dropped."""
    j.pool = self.handlers  # where its handler waits (fl_job_wake)
    j.direct = direct
    j.next = NULL
    if self.jobs_last != NULL:
        self.jobs_last.next = j
    else:
        self.jobs_first = j
    self.jobs_last = j
    self.njobs += 1


cdef int conn_start_job(Worker self, fl_conn *c) noexcept nogil:
    """Hands a streaming route's request (its head) to the handler threads: copied into a
    job queued at the end of this turn; its body follows as it arrives. 0, or -1 (closed)."""
    cdef fl_job *j = fl_job_new(self.inbox, fl_token(c), c.fd, c.head_len, 1)
    if j == NULL:
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return -1
    # SAFETY: the head is complete in c.rb.p from rpos; copied, so the buffer may move or be
    # reused while the handler runs.
    memcpy(j.req, c.rb.p + c.rb.start, c.head_len)
    j.reqs[0].off = 0
    j.reqs[0].head_len = c.head_len
    j.reqs[0].body_len = 0
    j.reqs[0].line = c.line
    j.reqs[0].req_flags = c.req_flags
    j.stream = 1
    conn_to_streaming(c, j)
    queue_job(self, j, not fl_has_output(c))
    # The head is in the job: drop it, so the body starts at rpos.
    c.rb.start += c.head_len
    if c.req_flags & FL_REQ_CHUNKED:
        fl_chunked_start(&c.chunked, 0)
        c.body_left = 1
    else:
        c.body_left = c.body_len  # the Content-Length, set with the head
    c.body_len = 0  # from here: body bytes handed to the handler
    if c.body_left == 0:
        fl_job_give_body(j, NULL, 0, 1)
    elif c.rb.start < c.rb.end:
        conn_deliver_body(self, c)
    return 0


cdef int conn_deliver_body(Worker self, fl_conn *c) noexcept nogil:
    """Hands the body bytes buffered for a streaming route to its handler: 0 for more,
    1 to stop reading (the handler holds enough, or the body ended or failed)."""
    cdef uint32_t avail = c.rb.end - c.rb.start
    cdef uint32_t n
    cdef int rc, full
    cdef int64_t room
    if c.req_flags & FL_REQ_CHUNKED:
        room = self.limits.body_bytes - <int64_t>c.body_len
        rc = fl_decode_chunked(c.rb.p + c.rb.start, avail, &c.chunked, room)
        if rc < 0:
            fl_job_give_body(c.job, NULL, 0, rc)
            c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
            c.rb.start = c.rb.end = 0
            return 1
        n = c.chunked.out  # decoded bytes sit at the start of the buffer
        full = fl_job_give_body(c.job, c.rb.p + c.rb.start, n, 1 if rc == 1 else 0)
        # Rebase the decoder on what remains: decoded bytes are the handler's now.
        c.rb.start += c.chunked.in_
        c.chunked.in_ = c.chunked.out = 0
        c.body_len += n
        if rc == 1:
            c.body_left = 0
    else:
        n = <uint32_t>min(<uint64_t>avail, c.body_left)
        c.body_left -= n
        full = fl_job_give_body(c.job, c.rb.p + c.rb.start, n, 1 if c.body_left == 0 else 0)
        c.rb.start += n
        c.body_len += n
    if c.rb.start == c.rb.end:
        c.rb.start = c.rb.end = 0
    if full < 0:
        self.count_errno(self.counters.io_errors, ENOMEM)
        conn_close(self, c)
        return 1
    if full:
        c.flags |= CONN_F_BODY_FULL
        return 1
    return 1 if c.body_left == 0 else 0


cdef void conn_read_body(Worker self, fl_conn *c) noexcept nogil:
    """Reads a streaming route's body from the socket for its handler, until EAGAIN, the
    end of the body, or the handler holding enough (it posts MSG_READ to resume)."""
    cdef ssize_t n
    cdef size_t space
    cdef int64_t budget = FL_READ_BUDGET
    while True:
        n = conn_recv(self, c, &space)
        if n > 0:
            if conn_deliver_body(self, c):
                c.flags |= CONN_F_READ_MORE  # the rest waits for the handler or its answer
                return
            if conn_read_budget_spent(self, c, &budget, n):
                return
        elif n == 0:
            fl_job_give_body(c.job, NULL, 0, -1)  # the body can never be complete
            c.flags |= CONN_F_PEER_EOF | CONN_F_CLOSE_AFTER
            return
        else:
            return  # EAGAIN: drained; anything else closed c


cdef void conn_answer_done(Worker self, fl_conn *c, int flags, int answered) noexcept nogil:
    """The handler's answers to c's job are complete (and queued in order): finish its
    requests and answer what is buffered after them."""
    cdef fl_job *j = c.job
    cdef bint stream = c.state == CONN_STREAMING
    cdef bint keep
    if c.state == CONN_WEBSOCKET:
        conn_ws_job_done(self, c)
        return
    if (flags & END_MORE) and j != NULL:
        # Answered up to j.start; the rest waits for the client to read (conn_flush).
        self.counters.requests += answered
        c.flags |= CONN_F_JOB_WAITS
        conn_resume_job(self, c)  # unless it caught up already
        return
    c.job = NULL
    if j != NULL:
        fl_job_release(j)
    if flags & END_CUT:
        # The head is out already: no 500 can follow. Cut the connection, so the client
        # sees an incomplete answer rather than a wrong one.
        c.flags |= CONN_F_CLOSE_AFTER
        c.flags &= ~CONN_F_LINGER
    elif flags & END_CLOSE:
        c.req_flags &= ~FL_REQ_KEEP_ALIVE
        c.flags |= CONN_F_CLOSE_AFTER
    if stream:
        c.req_len = 0  # what was read of the body is consumed already
        if c.body_left:
            # The handler left part of the body unread: the answer said close, and a
            # lingering close swallows the rest.
            c.flags |= CONN_F_CLOSE_AFTER | CONN_F_LINGER
        keep = not (c.flags & CONN_F_CLOSE_AFTER) and (c.req_flags & FL_REQ_KEEP_ALIVE) != 0
        self.consume(c)
        if keep:
            # It went out keep-alive: even in a stop, the next request is answered (below).
            c.flags &= ~CONN_F_CLOSE_AFTER
    else:
        # The staged requests were moved past already (conn_stage): count them.
        self.counters.requests += answered
        if flags & END_CLOSE:
            c.flags |= CONN_F_CLOSE_AFTER  # nothing after an answer that closes
        conn_resume(c)
        if c.rb.start == c.rb.end:
            c.rb.start = c.rb.end = 0
        # Stopping or not, only an answer that said "Connection: close" closes: one that
        # went out as keep-alive (its handler ran before the stop) invites the next
        # request, which is then answered with close, not reset or read and dropped.
    c.flags &= ~CONN_F_JOB_WAITS
    if c.rb.start < c.rb.end and not (c.flags & CONN_F_CLOSE_AFTER):
        self.conn_process(c)  # pipelined requests waited for these answers
    if c.fd >= 0 and not conn_in_handler(c) and (c.flags & CONN_F_READ_MORE):
        c.flags &= ~CONN_F_READ_MORE
        self.queue(&self.resume, &self.nresume, &self.cap_resume, c)


cdef void conn_resume_job(Worker self, fl_conn *c) noexcept nogil:
    """A job held back for a client that did not read (END_MORE) goes back to the handler
    threads once the client has caught up."""
    if c.wb.end - c.wb.start < FL_LOW_WATER and c.file_fd < 0 and c.outq == NULL:
        c.flags &= ~CONN_F_JOB_WAITS
        fl_atomic_add_int(&c.job.refs, 1)  # the handler's reference, again
        queue_job(self, c.job, not fl_has_output(c))
