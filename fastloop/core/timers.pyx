# Timers: a connection is on at most one timer (c.timer, its kind), linked through c.tprev and
# c.tnext into its kind's list. Every timer of one kind has the same duration, so a timer
# (re)started is appended at the tail and each list stays sorted by deadline: setting,
# unlinking and finding the earliest deadline are O(1) (one look at each list's head), and
# expiry takes heads until one is still in the future. What an expiry does is the worker's
# business (Worker.timers_expire); this file only keeps the lists.

from libc.stdlib cimport calloc, free


cdef void fl_timer_unlink(fl_timers *t, fl_conn *c) noexcept nogil:
    """Takes c off its timer's list, if it is on one."""
    cdef fl_timer_list *lst
    if c.timer == FL_TIMER_NONE:
        return
    lst = &t.lists[c.timer]
    if c.tprev != NULL:
        c.tprev.tnext = c.tnext
    else:
        lst.head = c.tnext
    if c.tnext != NULL:
        c.tnext.tprev = c.tprev
    else:
        lst.tail = c.tprev
    c.tprev = c.tnext = NULL
    c.timer = FL_TIMER_NONE


cdef void fl_timer_set(fl_timers *t, fl_conn *c, int kind, int64_t now) noexcept nogil:
    """(Re)starts c's timer of this kind at now: O(1), appended to a FIFO that stays sorted."""
    cdef fl_timer_list *lst = &t.lists[kind]
    fl_timer_unlink(t, c)
    c.timer = kind
    c.deadline = now + lst.duration_ms
    c.tprev = lst.tail
    c.tnext = NULL
    if lst.tail != NULL:
        lst.tail.tnext = c
    else:
        lst.head = c
    lst.tail = c


cdef int64_t fl_timers_next_deadline(fl_timers *t) noexcept nogil:
    """The earliest deadline of any timer (each list's head), or -1."""
    cdef int kind
    cdef int64_t best = -1
    cdef fl_conn *c
    for kind in range(1, FL_NTIMERS):
        c = t.lists[kind].head
        if c != NULL and (best < 0 or c.deadline < best):
            best = c.deadline
    return best


cdef fl_conn *fl_timer_pop(fl_timers *t, int kind, int64_t now) noexcept nogil:
    """The connection of this kind's list whose deadline is now or earlier (the earliest),
    taken off the list; NULL when there is none."""
    cdef fl_conn *c = t.lists[kind].head
    if c == NULL or c.deadline > now:
        return NULL
    fl_timer_unlink(t, c)
    return c


# A thin Python view, so tests can check the lists' contract directly (like poller.pyx).

cdef class Timers:
    """fl_timers for tests, over n connections named by index: set(i, kind, now), unlink(i),
    next_deadline(), pop(kind, now) -> i or None, and each one's kind(i) and deadline(i). A
    kind is an index into TIMER_NAMES; durations_ms maps kinds to their duration."""

    cdef fl_timers t
    cdef fl_conn *conns
    cdef int n

    def __cinit__(self, int n, durations_ms):
        self.conns = <fl_conn *>calloc(max(n, 1), sizeof(fl_conn))
        if self.conns == NULL:
            raise MemoryError()
        self.n = n
        for i in range(n):
            self.conns[i].slot = i
        for kind, ms in dict(durations_ms).items():
            self.t.lists[self.check_kind(kind)].duration_ms = ms

    def __dealloc__(self):
        free(self.conns)

    cdef int check_kind(self, int kind) except -1:
        if kind <= FL_TIMER_NONE or kind >= FL_NTIMERS:
            raise ValueError(f"no timer kind {kind}")
        return kind

    cdef fl_conn *conn(self, int i) except NULL:
        if i < 0 or i >= self.n:
            raise IndexError(i)
        return &self.conns[i]

    def set(self, int i, int kind, int64_t now):
        fl_timer_set(&self.t, self.conn(i), self.check_kind(kind), now)

    def unlink(self, int i):
        fl_timer_unlink(&self.t, self.conn(i))

    def next_deadline(self):
        return fl_timers_next_deadline(&self.t)

    def pop(self, int kind, int64_t now):
        cdef fl_conn *c = fl_timer_pop(&self.t, self.check_kind(kind), now)
        return None if c == NULL else c.slot

    def kind(self, int i):
        return self.conn(i).timer

    def deadline(self, int i):
        return self.conn(i).deadline
