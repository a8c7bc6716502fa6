# Acceptor dispatch: one thread accepts and hands descriptors to the workers.

from libc.stdlib cimport free, malloc, realloc
from posix.unistd cimport close


cdef class Acceptor(Loop):
    """Accepts on one listener and hands connections to workers round-robin (acceptor
    dispatch: the balanced choice where SO_REUSEPORT does not spread load, e.g. macOS)."""

    def __init__(self, list workers):
        self.workers = workers
        self.ninboxes = len(workers)
        self.inboxes = <fl_inbox **>malloc(self.ninboxes * sizeof(fl_inbox *))
        if self.inboxes == NULL:
            raise MemoryError()
        for i, w in enumerate(workers):
            # SAFETY: self.workers keeps each Worker, and so its inbox, alive.
            self.inboxes[i] = (<Worker>w).inbox

    def __dealloc__(self):
        free(self.inboxes)

    cdef int loop(self) noexcept nogil:
        cdef fl_event events[64]
        cdef int n, i, fd
        while not self.stopping:
            n = fl_poller_wait(&self.poller, events, 64, FL_ACCEPT_RETRY_MS if self.listener.retry else -1)
            if n < 0:
                return n
            for i in range(n):
                if events[i].token == FL_WAKER_TOKEN:
                    fl_poller_wake_drain(&self.poller)
            if n == 0 and not self.listener.retry:
                continue
            # Any event but the waker's is the listener's; a retry drains it too.
            while not self.stopping:
                fd = self.accept_one()
                if fd < 0:
                    break
                self.counters.accepted += 1
                self.hand_off(fd)
        self.close_listener()
        return 0

    cdef void hand_off(self, int fd) noexcept nogil:
        cdef fl_inbox *box = self.inboxes[self.next_worker]
        self.next_worker = (self.next_worker + 1) % self.ninboxes
        # Counted before the push: the worker may take and count it at once, and stats()
        # reckons the descriptors in transit as handed_off - the workers' accepted.
        self.counters.handed_off += 1
        if fl_inbox_push_fd(box, fd) < 0:
            self.counters.handed_off -= 1
            close(fd)
            self.counters.closed += 1
            self.count_errno(self.counters.io_errors, ENOMEM)
