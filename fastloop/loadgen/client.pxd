# client.h declared once: the load generator's socket, clock and bit calls (see client.h).
# cimported as a namespace: `from fastloop.loadgen cimport client`.

from libc.stdint cimport int64_t, uint64_t


cdef extern from "client.h" nogil:
    cdef struct sockaddr_storage:
        pass
    int64_t fl_now_ns()
    int fl_make_sockaddr(int family, const void *addr, int port, sockaddr_storage *out)
    int fl_client_socket(int family)
    int fl_bind_source(int fd, const sockaddr_storage *sa, int len)
    int fl_set_local_port_range(int fd, int lo, int hi)
    int fl_connect(int fd, const sockaddr_storage *sa, int len)
    int fl_socket_error(int fd)
    int fl_is_connected(int fd)
    int fl_msb64(uint64_t v)
    ssize_t fl_send(int fd, const void *buf, size_t n)
    ssize_t fl_recv(int fd, void *buf, size_t n)
