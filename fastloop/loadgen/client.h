/* client.h - the socket, clock and bit calls of the load generator (fastloop._bench) that
 * differ between Linux, BSD and macOS. The server's own calls are in core/compat.h; nothing
 * here is compiled into the server. Each returns 0 (or a value) or -errno and never touches
 * Python.
 */
#ifndef FL_CLIENT_H
#define FL_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "fdflags.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#ifndef MSG_NOSIGNAL
/* macOS has no MSG_NOSIGNAL; fl_finish_socket (fdflags.h) sets SO_NOSIGPIPE instead. */
#define MSG_NOSIGNAL 0
#endif

#if defined(__linux__) && !defined(IP_BIND_ADDRESS_NO_PORT)
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; older libc headers lack the name */
#endif
#if defined(__linux__) && !defined(IP_LOCAL_PORT_RANGE)
#define IP_LOCAL_PORT_RANGE 51     /* Linux 6.3; glibc < 2.38 lacks the name */
#endif

/* Nanoseconds on the precise monotonic clock: latency needs better than the coarse clock's
 * 1-4 ms. A vDSO read on Linux and macOS. */
static inline int64_t fl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Fills *out with family (AF_INET or AF_INET6), the raw address (4 or 16 bytes, network
 * order) and port. Returns the length to pass to bind/connect, or -EAFNOSUPPORT. */
static inline int fl_make_sockaddr(int family, const void *addr, int port,
                                   struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
#ifdef __APPLE__
        sin->sin_len = sizeof *sin;
#endif
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        memcpy(&sin->sin_addr, addr, 4);
        return (int)sizeof *sin;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
#ifdef __APPLE__
        sin6->sin6_len = sizeof *sin6;
#endif
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        memcpy(&sin6->sin6_addr, addr, 16);
        return (int)sizeof *sin6;
    }
    return -EAFNOSUPPORT;
}

/* A non-blocking, close-on-exec TCP socket with TCP_NODELAY (a load generator writes whole
 * requests: Nagle would only hold back pipelined batches). Returns fd or -errno. */
static inline int fl_client_socket(int family)
{
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    int fd = fl_finish_socket(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 1);
#else
    int fd = fl_finish_socket(socket(family, SOCK_STREAM, 0), 0);
#endif
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* Binds fd to a source address before connect(). With port 0 on Linux, IP_BIND_ADDRESS_NO_PORT
 * defers the port choice to connect(), which can then reuse a port toward other destinations:
 * without it, bind() reserves a port per socket and the range runs out sooner. Where the
 * option is missing, bind() picks a port as usual. Returns 0 or -errno. */
static inline int fl_bind_source(int fd, const struct sockaddr_storage *sa, int len)
{
#ifdef IP_BIND_ADDRESS_NO_PORT
    int one = 1;
    if (sa->ss_family == AF_INET)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    if (bind(fd, (const struct sockaddr *)sa, (socklen_t)len) < 0)
        return -errno;
    return 0;
}

/* Restricts the ephemeral ports this one socket may use to [lo, hi] (Linux >= 6.3,
 * IP_LOCAL_PORT_RANGE), without touching the system-wide sysctl. Returns 0, or -ENOPROTOOPT
 * where the option does not exist. */
static inline int fl_set_local_port_range(int fd, int lo, int hi)
{
#ifdef IP_LOCAL_PORT_RANGE
    uint32_t range = (uint32_t)lo | ((uint32_t)hi << 16);
    if (setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range) < 0)
        return -errno;
    return 0;
#else
    (void)fd, (void)lo, (void)hi;
    return -ENOPROTOOPT;
#endif
}

/* connect() without blocking: 0 when connected at once, -EINPROGRESS while the handshake runs
 * (then the socket turns writable), another -errno on failure. */
static inline int fl_connect(int fd, const struct sockaddr_storage *sa, int len)
{
    int rc;
    do {
        rc = connect(fd, (const struct sockaddr *)sa, (socklen_t)len);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

/* The pending error of a socket (SO_ERROR) as -errno, or 0: how a non-blocking connect()
 * reports its outcome once the socket turns writable. */
static inline int fl_socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* Index of the highest set bit of v (v > 0): the octave of a latency in the histogram. */
static inline int fl_msb64(uint64_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(v);
#else
    int n = 0;
    while (v >>= 1)
        n++;
    return n;
#endif
}

/* 1 if fd is connected to its peer (getpeername succeeds), else 0. */
static inline int fl_is_connected(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
}

/* send() without SIGPIPE, EINTR retried: bytes written, or -errno (-EAGAIN when the socket
 * is full; EWOULDBLOCK is reported as EAGAIN on every platform). */
static inline ssize_t fl_send(int fd, const void *buf, size_t n)
{
    ssize_t r;
    do {
        r = send(fd, buf, n, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* recv(), EINTR retried: bytes read (0: the peer closed), or -errno (-EAGAIN: nothing now). */
static inline ssize_t fl_recv(int fd, void *buf, size_t n)
{
    ssize_t r;
    do {
        r = recv(fd, buf, n, 0);
    } while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

#endif
