# What every event loop has: a poller, an optional listener, counters; and the accept drain.
#
# A listener is edge-triggered like everything else, so each readiness edge is drained until
# accept() says EAGAIN. The failure fastloop exists to prevent was a listener that took one
# connection per edge: the rest rotted in the backlog, abandoned by their clients, and every
# later accept() returned one of those dead connections. No accept() error is fatal: each is
# counted by errno, and running out of descriptors sheds connections (see reserve.h).

from libc.errno cimport EAGAIN, ECONNABORTED, EMFILE, ENFILE
from libc.string cimport memset
from posix.unistd cimport close


cdef class Loop:
    """What every event loop has: a poller, an optional listener and counters."""

    def __cinit__(self, *args, **kwargs):
        self.listener.fd = -1
        memset(&self.counters, 0, sizeof(fl_counters))
        cdef int rc = fl_poller_open(&self.poller)
        if rc < 0:
            raise_errno(-rc, "poller open")
        self.poller_open = True

    def __dealloc__(self):
        self.close_listener()
        if self.poller_open:
            fl_poller_close(&self.poller)

    def set_listener(self, int fd):
        """Takes ownership of fd, a non-blocking listening socket, and accepts from it."""
        cdef int rc = fl_poller_add_listener(&self.poller, fd, FL_LISTENER_TOKEN)
        if rc < 0:
            raise_errno(-rc, "poller add listener")
        self.listener.fd = fd
        rc = fl_reserve_take()
        if rc < 0:
            raise_errno(-rc, "open reserve descriptor")

    def run(self):
        """Runs the loop on the calling thread, the GIL released, until stop() and (for a
        Worker) every connection is closed. Meant for a thread of its own (Server does that)."""
        cdef int rc
        with nogil:
            rc = self.loop()
        if rc < 0:
            raise_errno(-rc, "poller wait")

    cdef int loop(self) noexcept nogil:
        return 0  # Worker and Acceptor each have theirs

    def stop(self, double timeout):
        """Thread-safe: asks the loop to stop accepting and to finish within timeout seconds."""
        if not self.poller_open:
            return
        self.stop_deadline = fl_now_ms() + <int64_t>(timeout * 1000)
        self.stopping = 1
        fl_poller_wake(&self.poller)

    def close(self):
        """Releases the poller's descriptors. Only once run() has returned: a closed poller's
        numbers may be reused, so no thread may wake it afterwards. Counters stay readable."""
        self.close_listener()
        if self.poller_open:
            self.poller_open = False
            fl_poller_close(&self.poller)

    def poller_fds(self):
        """Descriptors owned by the poller (for tests that count open descriptors)."""
        cdef int fds[4]
        cdef int n = fl_poller_fds(&self.poller, fds)
        return [fds[i] for i in range(n)]

    def stats(self):
        """A snapshot of the counters. Read without a lock while the loop runs: each number is
        exact, but numbers may be from slightly different instants."""
        cdef fl_counters c = self.counters
        return {
            "accepted": c.accepted, "closed": c.closed, "open": c.open,
            "handed_off": c.handed_off, "shed": c.shed, "requests": c.requests,
            "bytes_in": c.bytes_in, "bytes_out": c.bytes_out, "parse_errors": c.parse_errors,
            "aborted": c.aborted, "late_answers": c.late,
            "ws_opened": c.ws_opened,
            "ws_errors": {code: c.ws_errors[i] for i, code in enumerate(("1002", "1007", "1009", "1011"))
                          if c.ws_errors[i]},
            "rejected": {str(FL_STATUSES[i]): c.rejected[i] for i in range(FL_NSTATUS) if c.rejected[i]},
            "timeouts": {TIMER_NAMES[i]: c.timeouts[i] for i in range(1, FL_NTIMERS) if c.timeouts[i]},
            "accept_errors": errno_table(c.accept_errors),
            "io_errors": errno_table(c.io_errors),
        }

    cdef void count_errno(self, uint64_t *table, int err) noexcept nogil:
        table[err if 0 <= err < FL_NERRNO else FL_NERRNO - 1] += 1

    cdef void close_listener(self) noexcept nogil:
        if self.listener.fd >= 0:
            close(self.listener.fd)  # closing also removes it from the poller
            self.listener.fd = -1
        self.listener.retry = 0

    cdef int accept_one(self) noexcept nogil:
        """Accepts one connection and returns its descriptor, or -errno when this drain must end
        (-EAGAIN: the backlog is empty). Every error is counted by errno; none is fatal."""
        cdef int fd, err
        while True:
            fd = fl_accept_shared(self.listener.fd)
            if fd >= 0:
                return fd
            err = -fd
            if err == EAGAIN or err == EWOULDBLOCK:
                self.listener.retry = 0
                return -EAGAIN
            self.count_errno(self.counters.accept_errors, err)
            if err == ECONNABORTED:
                continue  # the client gave up while queued; the next one may be fine
            if err == EMFILE or err == ENFILE:
                fd = fl_reserve_shed(self.listener.fd)
                if fd == 1:
                    self.counters.accepted += 1
                    self.counters.closed += 1
                    self.counters.shed += 1
                    continue
                if fd == -EAGAIN:
                    self.listener.retry = 0
                    return -EAGAIN
            # The backlog may still hold connections, and edge-triggered, no new edge will say
            # so: the loop retries every FL_ACCEPT_RETRY_MS until a drain ends on EAGAIN.
            self.listener.retry = 1
            return -err


cdef class ConnLimit:
    """A cap on the connections open at once across the workers that share it
    (limit_concurrency): beyond it, a new connection gets 503 and is closed."""

    def __cinit__(self, int64_t limit):
        self.count = <int64_t *>malloc(sizeof(int64_t))
        if self.count == NULL:
            raise MemoryError()
        self.count[0] = 0
        self.limit = limit

    def __dealloc__(self):
        free(self.count)
