# poller.h declared once; the contract is written at the top of poller.h.

from libc.stdint cimport uint64_t


cdef extern from "poller.h" nogil:
    int FL_READABLE
    int FL_WRITABLE
    int FL_HUP
    uint64_t FL_WAKER_TOKEN
    uint64_t FL_LISTENER_TOKEN
    int FL_MAX_WAIT_EVENTS
    const char *FL_POLLER_NAME

    ctypedef struct fl_event:
        uint64_t token
        int mask

    ctypedef struct fl_poller:
        pass

    int fl_poller_open(fl_poller *p)
    void fl_poller_close(fl_poller *p)
    int fl_poller_add(fl_poller *p, int fd, uint64_t token)
    int fl_poller_add_listener(fl_poller *p, int fd, uint64_t token)
    int fl_poller_del(fl_poller *p, int fd)
    int fl_poller_wait(fl_poller *p, fl_event *out, int max, int timeout_ms)
    int fl_poller_wake(fl_poller *p)
    void fl_poller_wake_drain(fl_poller *p)
    int fl_poller_fds(fl_poller *p, int *out)
