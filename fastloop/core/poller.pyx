# A thin Python view of poller.h, so tests can check the backend contract directly (edge
# semantics, wake-ups, closed descriptors) on whichever backend this build compiled.

READABLE = FL_READABLE
WRITABLE = FL_WRITABLE
HUP = FL_HUP
WAKER_TOKEN = FL_WAKER_TOKEN


cdef class Poller:
    """poller.h for Python: add(fd, token), wait(timeout_ms) -> [(token, mask)], wake()."""

    cdef fl_poller p
    cdef bint is_open

    def __cinit__(self):
        cdef int rc = fl_poller_open(&self.p)
        if rc < 0:
            raise_errno(-rc, "poller open")
        self.is_open = True

    def __dealloc__(self):
        self.close()

    def close(self):
        if self.is_open:
            self.is_open = False
            fl_poller_close(&self.p)

    def add(self, int fd, uint64_t token):
        """Readable and writable, edge-triggered, for life."""
        cdef int rc = fl_poller_add(&self.p, fd, token)
        if rc < 0:
            raise_errno(-rc, "poller add")

    def add_listener(self, int fd, uint64_t token):
        cdef int rc = fl_poller_add_listener(&self.p, fd, token)
        if rc < 0:
            raise_errno(-rc, "poller add listener")

    def delete(self, int fd):
        cdef int rc = fl_poller_del(&self.p, fd)
        if rc < 0:
            raise_errno(-rc, "poller delete")

    def wait(self, int timeout_ms, int max_events=64):
        cdef fl_event events[64]
        cdef int n
        if max_events > 64:
            max_events = 64
        with nogil:
            n = fl_poller_wait(&self.p, events, max_events, timeout_ms)
        if n < 0:
            raise_errno(-n, "poller wait")
        return [(events[i].token, events[i].mask) for i in range(n)]

    def wake(self):
        """Thread-safe."""
        cdef int rc = fl_poller_wake(&self.p)
        if rc < 0:
            raise_errno(-rc, "poller wake")

    def wake_drain(self):
        fl_poller_wake_drain(&self.p)

    def fds(self):
        cdef int fds[4]
        cdef int n = fl_poller_fds(&self.p, fds)
        return [fds[i] for i in range(n)]
