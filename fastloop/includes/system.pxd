# Socket, clock and thread declarations that Cython does not ship, each declared once.
# Only the names fastloop uses are listed.

from libc.stdint cimport int64_t


cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int SHUT_WR
    int MSG_NOSIGNAL
    int MSG_DONTWAIT


cdef extern from "<errno.h>" nogil:
    int EWOULDBLOCK  # equal to EAGAIN on Linux, not everywhere


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    ctypedef struct pthread_cond_t:
        pass
    int pthread_cond_init(pthread_cond_t *c, void *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_signal(pthread_cond_t *c)
    int pthread_cond_broadcast(pthread_cond_t *c)


cdef extern from "compat.h" nogil:
    int fl_accept(int lfd)
    void fl_set_nodelay(int fd)
    int64_t fl_now_ms()
    int64_t fl_wall_seconds()
    void fl_format_date(int64_t secs, char *out)
    void fl_refresh_date_line(int64_t *sec, char *line)
    int fl_socket_address(int fd, int peer, char *host, size_t hostlen, int *port)
    ssize_t fl_sendfile(int out, int in_, int64_t *off, size_t n)


cdef extern from "reserve.h" nogil:
    int fl_reserve_take()
    int fl_accept_shared(int lfd)
    int fl_reserve_shed(int lfd)


cdef extern from "atomic.h" nogil:
    int64_t fl_atomic_add(int64_t *p, int64_t v)
    int fl_atomic_add_int(int *p, int v)
    int fl_atomic_load_int(const int *p)
    void fl_atomic_store_int(int *p, int v)
    int64_t fl_atomic_load(const int64_t *p)


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLOUT
