# The connection invariants of conn.pxd, checked after every event in a FASTLOOP_DEBUG=1 build
# (setup.py; CI's debug job runs the core tests on it). conn_invariant and worker_invariant are
# pure checks that name the first broken invariant; the loop aborts with that name, since a
# broken invariant means the state machine is wrong and nothing after it can be trusted. In a
# normal build FASTLOOP_DEBUG is the constant 0 and the compiler drops the calls.

from libc.string cimport memset

cdef extern from *:
    """
    #include <stdio.h>
    #include <stdlib.h>
    static void fl_invariant_broken(const char *what, unsigned slot, int state, int flags)
    {
        fprintf(stderr, "fastloop: invariant broken: %s (slot %u, state %d, flags %#x)\\n",
                what, slot, state, flags);
        abort();
    }
    """
    const int FASTLOOP_DEBUG
    void fl_invariant_broken(const char *what, unsigned slot, int state, int flags) nogil


cdef const char *buf_invariant(const buf.fl_buf *b) noexcept nogil:
    if not (b.start <= b.end and b.end <= b.cap):
        return "a buffer's start <= end <= cap"
    if b.p == NULL and b.cap != 0:
        return "a buffer without a block has no capacity"
    return NULL


cdef const char *conn_invariant(const fl_conn *c, const fl_timers *t) noexcept nogil:
    """The first invariant of conn.pxd that c breaks (its text), or NULL."""
    cdef const char *broken
    if c.fd < 0:
        if c.job != NULL or c.timer != FL_TIMER_NONE or c.outq != NULL or c.file_fd >= 0 or c.ws != NULL:
            return "a free slot has no job, timer, queued answer or file"
        if c.rb.p != NULL or c.wb.p != NULL:
            return "a free slot holds no buffer"
        return NULL
    if c.state < CONN_READ_HEAD or c.state > CONN_STREAMING:
        return "the state is one of the six"
    if (conn_in_handler(c) and c.job == NULL) or \
            (c.job != NULL and not conn_in_handler(c) and c.ws == NULL):
        return "a job while IN_HANDLER or STREAMING, else only on a WebSocket (its application runs)"
    if (c.state == CONN_WEBSOCKET and c.ws == NULL) or \
            (c.ws != NULL and c.state != CONN_WEBSOCKET and c.state != CONN_CLOSING):
        return "WebSocket state while WEBSOCKET (and closing it) only"
    if (c.flags & CONN_F_JOB_WAITS) and not conn_in_handler(c):
        return "JOB_WAITS only while IN_HANDLER or STREAMING"
    if (c.flags & CONN_F_BODY_FULL) and c.state != CONN_STREAMING and c.ws == NULL:
        return "BODY_FULL only while STREAMING or on a WebSocket"
    if c.state == CONN_CLOSING and not (c.flags & CONN_F_CLOSE_AFTER):
        return "CLOSING only with CLOSE_AFTER"
    broken = buf_invariant(&c.rb)
    if broken == NULL:
        broken = buf_invariant(&c.wb)
    if broken != NULL:
        return broken
    if (c.outq == NULL) != (c.outq_tail == NULL):
        return "the answer queue has a head exactly when it has a tail"
    if c.file_end != 0 and c.file_fd < 0:
        return "an end to apply after a file only while a file is being sent"
    if c.timer < FL_TIMER_NONE or c.timer >= FL_NTIMERS:
        return "the timer is one of the kinds"
    if c.timer == FL_TIMER_NONE:
        if c.tprev != NULL or c.tnext != NULL:
            return "a connection on no timer is on no list"
    elif (c.tprev == NULL and t.lists[c.timer].head != c) or \
            (c.tnext == NULL and t.lists[c.timer].tail != c) or \
            (c.tprev != NULL and c.tprev.tnext != c) or (c.tnext != NULL and c.tnext.tprev != c):
        return "a connection on a timer is linked into its kind's list"
    return NULL


cdef const char *worker_invariant(Worker self) noexcept nogil:
    """The first broken invariant of the worker's connection table and timer lists, or NULL."""
    cdef uint32_t i
    cdef uint64_t live = 0, timed = 0, listed = 0
    cdef int kind
    cdef fl_conn *c
    cdef const char *broken
    for i in range(self.nslots):
        c = self.slots[i]
        broken = conn_invariant(c, &self.timers)
        if broken != NULL:
            return broken
        if c.fd >= 0:
            live += 1
            if c.timer != FL_TIMER_NONE:
                timed += 1
    if live != self.counters.open or self.nfree != self.nslots - live:
        return "open connections are the live slots, the others are free"
    if self.counters.accepted != self.counters.closed + self.counters.open:
        return "accepted == closed + open"
    for kind in range(1, FL_NTIMERS):
        c = self.timers.lists[kind].head
        while c != NULL:
            listed += 1
            if c.timer != kind or c.fd < 0:
                return "a timer list holds open connections of its kind only"
            if c.tnext != NULL and c.tnext.deadline < c.deadline:
                return "a timer list is sorted by deadline"
            c = c.tnext
    if listed != timed:
        return "every connection on a timer is on a list"
    return NULL


cdef inline void conn_check(Worker self, fl_conn *c) noexcept nogil:
    cdef const char *broken = conn_invariant(c, &self.timers)
    if broken != NULL:
        fl_invariant_broken(broken, c.slot, c.state, c.flags)


cdef inline void worker_check(Worker self) noexcept nogil:
    cdef const char *broken = worker_invariant(self)
    if broken != NULL:
        fl_invariant_broken(broken, 0xffffffffu, -1, 0)


# A thin Python view of conn_invariant, so tests can check the checker: one connection built
# from keyword fields (pointers as booleans: they are compared with NULL, never followed).

DEBUG_BUILD = bool(FASTLOOP_DEBUG)


def conn_invariant_of(*, int fd=5, int state=CONN_READ_HEAD, int flags=0, bint job=False,
                      rb=(False, 0, 0, 0), wb=(False, 0, 0, 0), bint outq=False,
                      bint outq_tail=False, int file_fd=-1, int file_end=0,
                      int timer=FL_TIMER_NONE, bint timer_linked=True, bint ws=False):
    """The text of the first invariant such a connection breaks, or None. rb and wb are
    (has a block, cap, start, end); timer_linked=False marks it on a timer but on no list."""
    cdef fl_conn c
    cdef fl_timers t
    cdef char block
    cdef const char *broken
    memset(&c, 0, sizeof(c))
    memset(&t, 0, sizeof(t))
    c.fd = fd
    c.state = state
    c.flags = flags
    # SAFETY: these pointers are only compared with NULL by conn_invariant, never followed.
    c.job = <fl_job *>&block if job else NULL
    c.outq = <fl_msg *>&block if outq else NULL
    c.ws = <void *>&block if ws else NULL
    c.outq_tail = <fl_msg *>&block if outq_tail else NULL
    c.rb.p = &block if rb[0] else NULL
    c.rb.cap, c.rb.start, c.rb.end = rb[1], rb[2], rb[3]
    c.wb.p = &block if wb[0] else NULL
    c.wb.cap, c.wb.start, c.wb.end = wb[1], wb[2], wb[3]
    c.file_fd = file_fd
    c.file_end = file_end
    if timer_linked and FL_TIMER_NONE < timer < FL_NTIMERS:
        fl_timer_set(&t, &c, timer, 0)
    else:
        c.timer = timer
    broken = conn_invariant(&c, &t)
    return None if broken == NULL else broken.decode()
