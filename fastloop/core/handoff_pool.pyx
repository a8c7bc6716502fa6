# The pool of a server's jobs (fl_pool, declared in handoff.pxd): the event loops queue
# jobs on it in batches, handler threads take them one by one and wait on it when there are
# none (fl_pool_wait: under a GIL, one thread runs while another watches), and an asyncio
# loop takes them all at once. The exchange it is part of is described in handoff.pyx; the
# same rule holds here: nothing is traced in a FASTLOOP_DEBUG=1 build (a traced line takes
# the GIL, which must never be waited for while one of these locks is held).

cimport cython
from posix.unistd cimport write


cdef enum:
    FL_WATCH_LINGER = 50          # watch periods the watcher stays on after jobs were queued


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_pool_push(fl_pool *p, fl_job *first, fl_job *last, int n) noexcept nogil:
    """Queues a batch of n jobs (linked through next) with one lock and at most one wake-up."""
    cdef fl_job *j
    cdef int64_t now = fl_pool_now_ns() if p.watch_ns else 0
    j = first
    while j != NULL:  # (the jobs are this loop's alone until they are on the queue)
        j.queued_ns = now
        j = j.next
    pthread_mutex_lock(&p.lock)
    if p.tail != NULL:
        p.tail.next = first
    else:
        p.head = first
    p.tail = last
    last.next = NULL
    p.queued += n
    if p.notify_fd >= 0:
        fl_pool_notify(p)
    elif p.running == 0:
        # Nobody runs jobs: a thread to run them (the watcher if nobody else waits).
        if p.idle:
            pthread_cond_signal(&p.cond)
        elif p.watching:
            pthread_cond_signal(&p.watch_cond)
    elif p.idle and not p.watching:
        pthread_cond_signal(&p.cond)  # one to watch that they keep moving (fl_pool_wait)
    p.pushed_ns = now
    pthread_mutex_unlock(&p.lock)


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_pool_notify(fl_pool *p) noexcept nogil:
    """Under p.lock: tells an asyncio pool's loop that there is work, once per batch."""
    cdef char one = 1
    if not p.notified:
        p.notified = 1
        # A full pipe cannot happen (one byte until the loop drains it); an error would only
        # lose a wake-up that the next one brings.
        write(p.notify_fd, &one, 1)


@cython.linetrace(False)
@cython.profile(False)
cdef void fl_pool_ready(fl_pool *p, fl_job *j) noexcept nogil:
    """Under j.lock: puts j on p's ready list (holding a reference) unless it is there."""
    pthread_mutex_lock(&p.lock)
    if not j.ready and not p.stopping:
        j.ready = 1
        fl_atomic_add_int(&j.refs, 1)
        j.ready_next = NULL
        if p.ready_tail != NULL:
            p.ready_tail.ready_next = j
        else:
            p.ready = j
        p.ready_tail = j
        fl_pool_notify(p)
    pthread_mutex_unlock(&p.lock)


@cython.linetrace(False)
@cython.profile(False)
cdef fl_job *fl_pool_take_all(fl_pool *p, fl_job **ready) noexcept nogil:
    """An asyncio pool's side: every queued job (linked through next) and every woken one
    (through ready_next, each holding a reference the caller releases). The next post after
    this writes to the pipe again."""
    cdef fl_job *jobs
    cdef fl_job *r
    pthread_mutex_lock(&p.lock)
    jobs = p.head
    r = jobs
    while r != NULL and r.next != NULL:
        r.direct = 0  # not alone: their answers go through the loop together (fl_pool_take)
        r = r.next
    p.head = p.tail = NULL
    ready[0] = p.ready
    r = p.ready
    while r != NULL:
        r.ready = 0
        r = r.ready_next
    p.ready = p.ready_tail = NULL
    p.notified = 0
    pthread_mutex_unlock(&p.lock)
    return jobs


@cython.linetrace(False)
@cython.profile(False)
cdef fl_job *fl_pool_take(fl_pool *p) noexcept nogil:
    """The next job, or NULL if none is queued. Work left behind wakes an idle thread (unless
    one watches already), to run it if the caller blocks in its handler (fl_pool_wait)."""
    cdef fl_job *j
    pthread_mutex_lock(&p.lock)
    j = p.head
    if j != NULL:
        p.head = j.next
        if p.head == NULL:
            p.tail = NULL
        j.next = NULL
        if p.head != NULL:
            # Others are queued behind it: its answer goes through the loop with theirs, one
            # wake-up for all (direct sends pay off for the client who is alone).
            j.direct = 0
            if p.idle and not p.watching:
                pthread_cond_signal(&p.cond)
    pthread_mutex_unlock(&p.lock)
    return j


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_pool_wait(fl_pool *p, bint was_running) noexcept nogil:
    """A handler thread's wait for jobs to run: 1 when it should take them (fl_pool_take), 0
    once the pool stops. was_running: the caller ran jobs since its last call. Call without
    the GIL.

    Under a GIL only one thread runs Python at a time: a second thread woken while the first
    one runs handlers would only fight it for the GIL (a wake-up, a GIL hand-over and back,
    per batch). So while a thread runs, one other thread watches instead (on watch_cond, with
    a deadline): it joins once the oldest queued job has waited watch_ns, which means the
    running threads are blocked in handlers (sleep, I/O: GIL released) rather than busy with
    the jobs before it. A busy thread empties a batch well within watch_ns; blocked ones do
    not, and threads join one by one until enough of them keep the queue moving. The watcher
    stays on watch, waking every watch_ns or so, for FL_WATCH_LINGER watch periods after the
    last jobs were queued: a request at a time (one connection, keep-alive) then wakes only
    the thread that runs it, not a watcher each time too."""
    cdef int rc = -1
    pthread_mutex_lock(&p.lock)
    if was_running:
        p.running -= 1
    while rc < 0:
        if p.stopping:
            rc = 0
        elif p.head != NULL and (p.watch_ns == 0 or p.running == 0):
            rc = 1
        elif p.watch_ns and not p.watching and (
                p.running or p.head != NULL
                or fl_pool_now_ns() - p.pushed_ns < FL_WATCH_LINGER * p.watch_ns):
            rc = fl_pool_watch(p)
        else:
            p.idle += 1
            pthread_cond_wait(&p.cond, &p.lock)
            p.idle -= 1
    if rc:
        p.running += 1
    pthread_mutex_unlock(&p.lock)
    return rc


@cython.linetrace(False)
@cython.profile(False)
cdef int fl_pool_watch(fl_pool *p) noexcept nogil:
    """Under p.lock: the watcher's turn (see fl_pool_wait). 1: join the running threads, 0:
    the pool stops, -1: go back to waiting (the queue is empty and has been quiet)."""
    cdef int rc = -1
    cdef int64_t now, due
    p.watching = 1
    while True:
        if p.stopping:
            rc = 0
            break
        if p.head != NULL and p.running == 0:
            rc = 1
            break
        now = fl_pool_now_ns()
        if p.head != NULL:
            if now - p.head.queued_ns >= p.watch_ns:
                rc = 1  # the running threads left the queue standing: join them
                break
            # Not before a quarter of watch_ns: a backlog that moves costs a few wake-ups
            # per watch_ns, not one per batch.
            due = max(p.head.queued_ns + p.watch_ns, now + p.watch_ns // 4)
        elif p.running == 0 and now - p.pushed_ns >= FL_WATCH_LINGER * p.watch_ns:
            break  # quiet: wait untimed, like the idle threads
        else:
            due = now + p.watch_ns
        fl_cond_wait_until(&p.watch_cond, &p.lock, due)
    p.watching = 0
    return rc
