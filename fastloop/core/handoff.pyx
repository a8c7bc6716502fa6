# Handing requests from event loops to handler threads, and answers back.
#
# Theory of operation. An event loop never runs application code. When a request needs
# Python, the loop copies it into an fl_job and, at the end of its turn, queues every job of
# the turn on the server's fl_pool with one lock and at most one wake-up. A handler thread
# takes jobs only while it holds the GIL (so a thread woken while another runs Python does
# not strand a job it cannot run yet). Under a GIL a second thread joins only once the
# queue stands still (fl_pool_wait): when a handler blocks and releases the GIL, the next
# thread runs the next job; while it computes, nobody fights it for the GIL.
#
# Answers travel back as fl_msg messages posted to the connection's loop inbox (MSG_DATA,
# MSG_FILE, then MSG_END), each as soon as it exists; the loop is woken only when its inbox
# turns non-empty, and appends every message of a turn before it writes, so answers that are
# ready together leave together. A connection has at most one job at a time: the loop parses
# its next pipelined request only after MSG_END, which keeps answers in request order.
#
# One shortcut: a handler taken with no other job queued behind it, whose connection had
# nothing unsent when the loop queued it, sends its answer's bytes to the socket itself as far
# as the socket takes them (fl_job_send, non-blocking, under the job's lock, which the loop
# takes before it closes the socket), and the message then carries the rest, the END and the
# count. A client who is alone gets its answer without waiting for the loop to wake; under load
# the answers still leave through the loop together, one wake-up for many.
#
# Backpressure both ways, and neither side waits for the other: a handler that streams an
# answer waits (on the job's condition variable, GIL released) while more than FL_HIGH_WATER
# of what it posted is unsent; the loop signals once the socket took enough. A streaming
# route's body goes the other way: the loop appends body bytes to the job and stops reading the
# socket while FL_HIGH_WATER of them wait; the handler takes them and posts MSG_READ.
#
# Lifetimes. A job has two references (loop, handler), an inbox one per job plus its loop's;
# the last release frees. When a connection closes, the loop marks its job gone (the handler
# stops producing; what it still posts is dropped), and when a loop ends its inbox is closed
# (later posts are dropped and counted as late answers). Nothing here relies on the GIL.
#
# A pool may also be run by one asyncio loop instead of threads (core/asgi_bridge.pyx): its handlers
# wait on futures, not on a job's condition variable. Then queueing jobs and waking a job
# (room to send, body bytes, the connection gone) put it on the pool's lists and write one
# byte to the pool's pipe only if nobody was told yet: one wake-up of the asyncio loop per
# batch, whatever the number of loops, jobs and events. Lock order: a job's, then its pool's.
#
# The pool, and how handler threads wait on it, is handoff_pool.pyx.
#
# Nothing here is traced in a FASTLOOP_DEBUG=1 build (linetrace, profile off): a traced line
# takes the GIL, and one taken while holding a lock here would deadlock with a Python thread
# that holds the GIL and waits for that lock (the asyncio thread taking its jobs, say).

cimport cython
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset
from posix.unistd cimport close


cdef enum:
    FL_HIGH_WATER = 1048576       # unsent (or untaken body) bytes that pause the producer
    FL_LOW_WATER = 262144         # ... and let it go on


# ---- messages and inboxes -----------------------------------------------------------------

@cython.linetrace(False)
@cython.profile(False)
cdef fl_msg *fl_msg_new(uint64_t token, int kind) noexcept nogil:
    cdef fl_msg *m = <fl_msg *>malloc(sizeof(fl_msg))
    if m != NULL:
        memset(m, 0, sizeof(fl_msg))
        m.token = token
        m.kind = kind
        m.fd = -1
    return m


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_msg_free(fl_msg *m) noexcept nogil:
    if m.fd >= 0:
        close(m.fd)
    free(m.data)
    free(m)


@cython.linetrace(False)
@cython.profile(False)
cdef fl_inbox *fl_inbox_new(fl_poller *poller) noexcept nogil:
    cdef fl_inbox *box = <fl_inbox *>malloc(sizeof(fl_inbox))
    if box == NULL:
        return NULL
    memset(box, 0, sizeof(fl_inbox))
    pthread_mutex_init(&box.lock, NULL)
    box.refs = 1
    box.poller = poller
    return box


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_inbox_drop_pending(fl_inbox *box) noexcept nogil:
    # Under box.lock, or once nobody else holds a reference.
    cdef fl_msg *m
    cdef fl_msg *nxt
    cdef int i
    m = box.head
    while m != NULL:
        nxt = m.next
        fl_msg_free(m)
        box.dropped += 1
        m = nxt
    box.head = box.tail = NULL
    for i in range(box.n):
        close(box.fds[i])
    box.n = 0


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_inbox_close(fl_inbox *box) noexcept nogil:
    """The loop is done: from now on posts are dropped, and the poller is never woken."""
    pthread_mutex_lock(&box.lock)
    box.closed = 1
    box.poller = NULL
    fl_inbox_drop_pending(box)
    pthread_mutex_unlock(&box.lock)


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_inbox_release(fl_inbox *box) noexcept nogil:
    if fl_atomic_add_int(&box.refs, -1) == 0:
        fl_inbox_drop_pending(box)
        free(box.fds)
        pthread_mutex_destroy(&box.lock)
        free(box)


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_inbox_post(fl_inbox *box, fl_msg *m) noexcept nogil:
    """Appends m (taking ownership) and wakes the loop if the inbox was empty. Returns 0, or
    -1 when the loop is gone (m is freed and counted as dropped)."""
    cdef bint was_empty
    m.next = NULL
    pthread_mutex_lock(&box.lock)
    if box.closed:
        box.dropped += 1
        pthread_mutex_unlock(&box.lock)
        fl_msg_free(m)
        return -1
    was_empty = box.head == NULL and box.n == 0
    if box.tail != NULL:
        box.tail.next = m
    else:
        box.head = m
    box.tail = m
    if was_empty:
        # Under the lock: fl_inbox_close clears poller first, so it is never a closed one.
        fl_poller_wake(box.poller)
    pthread_mutex_unlock(&box.lock)
    return 0


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_inbox_push_fd(fl_inbox *box, int fd) noexcept nogil:
    """An acceptor hands over fd. Returns 0, or -1 (fd not taken) without memory or loop."""
    cdef void *p
    cdef bint was_empty
    pthread_mutex_lock(&box.lock)
    if box.closed:
        pthread_mutex_unlock(&box.lock)
        return -1
    if box.n == box.cap:
        p = realloc(box.fds, (box.cap * 2 + 64) * sizeof(int))
        if p == NULL:
            pthread_mutex_unlock(&box.lock)
            return -1
        box.fds = <int *>p
        box.cap = box.cap * 2 + 64
    was_empty = box.head == NULL and box.n == 0
    box.fds[box.n] = fd
    box.n += 1
    if was_empty:
        fl_poller_wake(box.poller)  # one wake-up per batch: the loop takes all at once
    pthread_mutex_unlock(&box.lock)
    return 0


@cython.linetrace(False)
@cython.profile(False)
cdef fl_msg *fl_inbox_take(fl_inbox *box, int **fds, int *nfds) noexcept nogil:
    """Everything posted so far: the messages (a list the caller frees) and the handed-over
    descriptors (an array the caller frees)."""
    cdef fl_msg *m
    pthread_mutex_lock(&box.lock)
    m = box.head
    box.head = box.tail = NULL
    fds[0] = box.fds
    nfds[0] = box.n
    box.fds = NULL
    box.n = box.cap = 0
    pthread_mutex_unlock(&box.lock)
    return m


# ---- jobs ---------------------------------------------------------------------------------

@cython.linetrace(False)
@cython.profile(False)
cdef fl_job *fl_job_new(fl_inbox *box, uint64_t token, int fd, size_t req_bytes, int nreqs) noexcept nogil:
    """A job for nreqs requests of connection token, with req_bytes of room for their copy;
    the caller fills j.req and j.reqs. Holds two references (loop, handler)."""
    # One allocation for the job, its request records and the copied bytes.
    cdef size_t size = sizeof(fl_job) + nreqs * sizeof(fl_jobreq) + req_bytes
    cdef fl_job *j = <fl_job *>malloc(size)
    if j == NULL:
        return NULL
    memset(j, 0, sizeof(fl_job))
    j.reqs = <fl_jobreq *>(<char *>j + sizeof(fl_job))
    j.nreqs = nreqs
    j.req = <char *>j.reqs + nreqs * sizeof(fl_jobreq)
    pthread_mutex_init(&j.lock, NULL)
    pthread_cond_init(&j.cond, NULL)
    j.refs = 2
    j.token = token
    j.fd = fd
    fl_atomic_add_int(&box.refs, 1)
    j.inbox = box
    return j


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_job_release(fl_job *j) noexcept nogil:
    if fl_atomic_add_int(&j.refs, -1) == 0:
        fl_inbox_release(j.inbox)
        pthread_cond_destroy(&j.cond)
        pthread_mutex_destroy(&j.lock)
        free(j.body)
        if j.req_apart:
            free(j.req)
        free(j)  # the records and the request bytes are in the same allocation


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_job_gone(fl_job *j) noexcept nogil:
    """The loop's side: the connection is closing (fd is still open, closed right after).
    The handler stops waiting and producing; the loop drops its reference."""
    pthread_mutex_lock(&j.lock)
    j.gone = 1
    j.fd = -1
    fl_job_wake(j)
    pthread_mutex_unlock(&j.lock)
    fl_job_release(j)


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_job_peer_eof(fl_job *j) noexcept nogil:
    """The loop's side: the client shut its sending side while the handler runs (an asyncio
    handler's receive() then reports the disconnect, as other ASGI servers do)."""
    pthread_mutex_lock(&j.lock)
    if not j.peer_eof:
        j.peer_eof = 1
        fl_job_wake(j)
    pthread_mutex_unlock(&j.lock)


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_job_wake(fl_job *j) noexcept nogil:
    """Under j.lock: whoever waits for j looks again (a thread on j.cond, or the asyncio
    loop of j's pool)."""
    if j.pool != NULL and j.pool.notify_fd >= 0:
        fl_pool_ready(j.pool, j)
    else:
        pthread_cond_broadcast(&j.cond)


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_job_post(fl_job *j, fl_msg *m) noexcept nogil:
    """Posts m for j's connection (taking ownership): 0, or -1 if the connection or its loop
    is gone. DATA bytes count toward j.posted for backpressure."""
    if m == NULL:
        return -1
    m.token = j.token
    if m.kind != MSG_READ:  # (MSG_READ only lets the loop read on: it sends nothing)
        pthread_mutex_lock(&j.lock)
        # The loop sends this, or acts on it, after what it has: what comes later must
        # follow it there, not overtake it on the socket (fl_job_send).
        j.direct = 0
        if m.kind == MSG_DATA:
            j.posted += m.len
        elif m.kind == MSG_FILE:
            j.posted += <uint64_t>m.count
        pthread_mutex_unlock(&j.lock)
    return fl_inbox_post(j.inbox, m)


@cython.linetrace(False)
@cython.profile(False)
cdef size_t fl_job_send(fl_job *j, const char *p, size_t n) noexcept nogil:
    """The handler's side: sends what the socket takes of p (the next n bytes of its answer)
    straight to the client, when the loop lets it (j.direct: nothing of the connection's is
    unsent in the loop, and nothing of this job went through it). This saves the loop a
    wake-up and a copy before the client has its answer; the loop still hears of the answer's
    end (MSG_F_END) to read the next request. Returns the bytes sent. Fewer than n (0 too:
    not allowed, EAGAIN, or an error, which the loop meets itself on its next send) end
    direct sending for the job: the rest goes through the loop, after these bytes.

    Never waits: the socket is non-blocking. Under j.lock, because the loop closes the
    socket only after fl_job_gone took that lock (and cleared fd): the send can never reach
    a descriptor that was closed and reused meanwhile."""
    cdef ssize_t sent = 0
    # Once the job is queued only its handler writes direct (fl_pool_take, fl_job_post and
    # below), so that handler may read it without the lock: most answers under load go
    # through the loop, and need no lock here.
    if not j.direct:
        return 0
    pthread_mutex_lock(&j.lock)
    if j.fd >= 0 and not j.gone:
        sent = send(j.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
        if sent < 0:
            sent = 0
    if <size_t>sent < n:
        j.direct = 0
    pthread_mutex_unlock(&j.lock)
    return <size_t>sent


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_job_wait_room(fl_job *j) noexcept nogil:
    """The handler's side: waits while more than FL_HIGH_WATER posted bytes are unsent.
    Returns 0, or -1 once the connection is gone."""
    cdef int rc
    pthread_mutex_lock(&j.lock)
    while not j.gone and j.posted > j.sent + FL_HIGH_WATER:
        j.wait_room = 1
        pthread_cond_wait(&j.cond, &j.lock)
    rc = -1 if j.gone else 0
    pthread_mutex_unlock(&j.lock)
    return rc


@cython.linetrace(False)
@cython.profile(False)
cdef bint fl_job_behind(fl_job *j) noexcept nogil:
    """More than FL_HIGH_WATER of what the handler posted is still unsent."""
    cdef bint behind
    pthread_mutex_lock(&j.lock)
    behind = j.posted > j.sent + FL_HIGH_WATER
    pthread_mutex_unlock(&j.lock)
    return behind


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_job_sent(fl_job *j, uint64_t n) noexcept nogil:
    """The loop's side: n more bytes of j's connection went out; wakes a waiting producer
    once little is left."""
    pthread_mutex_lock(&j.lock)
    j.sent += n
    # (sent may pass posted: bytes of the answer before this job count too.)
    if j.wait_room and j.posted < j.sent + FL_LOW_WATER:
        j.wait_room = 0
        fl_job_wake(j)
    pthread_mutex_unlock(&j.lock)


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_job_give_body(fl_job *j, const char *p, size_t n, int end) noexcept nogil:
    """The loop's side of a streaming body: appends n bytes (end: 0, 1 or -status). Returns
    1 when the handler holds FL_HIGH_WATER or more untaken (stop reading), 0, or -1 without
    memory."""
    cdef int rc
    pthread_mutex_lock(&j.lock)
    if n:
        if fl_job_body_reserve(j, n, 65536) < 0:
            pthread_mutex_unlock(&j.lock)
            return -1
        memcpy(j.body + j.body_n, p, n)
        j.body_n += n
    if end:
        j.body_end = end
    rc = fl_job_body_given(j)
    pthread_mutex_unlock(&j.lock)
    return rc


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_job_body_given(fl_job *j) noexcept nogil:
    """Under j.lock, after body bytes were appended: wakes a waiting reader; 1 when the
    reader holds FL_HIGH_WATER or more untaken (the loop stops reading), else 0."""
    cdef int rc = 0
    if j.body_n >= FL_HIGH_WATER:
        j.body_paused = 1
        rc = 1
    if j.wait_body:
        j.wait_body = 0
        fl_job_wake(j)
    return rc


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_job_body_reserve(fl_job *j, size_t n, size_t first) noexcept nogil:
    """Under j.lock: room for n more body bytes (doubling, from first bytes). 0, or -1."""
    cdef void *q
    cdef size_t cap
    if j.body_n + n <= j.body_cap:
        return 0
    cap = j.body_cap * 2 if j.body_cap else first
    while cap < j.body_n + n:
        cap *= 2
    q = realloc(j.body, cap)
    if q == NULL:
        return -1
    j.body = <char *>q
    j.body_cap = cap
    return 0


@cython.linetrace(False)
@cython.profile(False)
cdef char *fl_job_take_body(fl_job *j, size_t *n, int *end, int *gone) noexcept nogil:
    """The handler's side (asyncio): every body byte received and not yet taken; see
    fl_job_take_body_part."""
    return fl_job_take_body_part(j, <size_t>-1, n, end, gone)


@cython.linetrace(False)
@cython.profile(False)
cdef char *fl_job_take_body_part(fl_job *j, size_t most, size_t *n, int *end, int *gone) noexcept nogil:
    """The handler's side: up to most of the body bytes received and not yet taken, as a
    buffer the caller frees (NULL and n 0 when none, or without memory for a part). All of
    them change hands without a copy. With them: the body's end (0, 1 or -status) once
    nothing is left untaken, and whether the connection is gone. With nothing to take and
    more to come, the job's wait_body flag is set: a wake-up will come (fl_job_wake). Reading
    resumes (MSG_READ) if it had stopped for this reader."""
    cdef char *data = NULL
    cdef bint resume = False
    pthread_mutex_lock(&j.lock)
    n[0] = 0
    if j.body_n and j.body_n <= most:
        data = j.body
        n[0] = j.body_n
        j.body = NULL
        j.body_n = j.body_cap = 0
    elif j.body_n:
        data = <char *>malloc(most)
        if data != NULL:
            n[0] = most
            memcpy(data, j.body, most)
            memmove(j.body, j.body + most, j.body_n - most)
            j.body_n -= most
    end[0] = j.body_end if j.body_n == 0 else 0
    gone[0] = j.gone
    if n[0] == 0 and end[0] == 0 and not j.gone:
        j.wait_body = 1
    if j.body_paused and j.body_n < FL_LOW_WATER:
        j.body_paused = 0
        resume = True
    pthread_mutex_unlock(&j.lock)
    if resume:
        fl_job_post(j, fl_msg_new(0, MSG_READ))
    return data


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_job_wait_body(fl_job *j) noexcept nogil:
    """A handler thread's side: waits (on the job's condition variable) until body bytes
    are there to take, the body has ended or failed, or the connection is gone."""
    pthread_mutex_lock(&j.lock)
    while j.body_n == 0 and j.body_end == 0 and not j.gone:
        j.wait_body = 1
        pthread_cond_wait(&j.cond, &j.lock)
    pthread_mutex_unlock(&j.lock)


@cython.linetrace(False)
@cython.profile(False)
cdef bint fl_job_body_read(fl_job *j) noexcept nogil:
    """A streaming route's body arrived whole and the handler took all of it."""
    cdef bint done
    pthread_mutex_lock(&j.lock)
    done = j.body_end == 1 and j.body_n == 0
    pthread_mutex_unlock(&j.lock)
    return done
