/* compat.h - the few socket and clock calls that differ between Linux, BSD and macOS.
 * Every .pyx stays free of platform checks; they all live here and in poller.h. */
#ifndef FL_COMPAT_H
#define FL_COMPAT_H

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
/* macOS has no MSG_NOSIGNAL; fl_accept sets SO_NOSIGPIPE on each socket instead. */
#define MSG_NOSIGNAL 0
#endif

#ifndef CLOCK_MONOTONIC_COARSE
#define CLOCK_MONOTONIC_COARSE CLOCK_MONOTONIC
#endif
#ifndef CLOCK_REALTIME_COARSE
#define CLOCK_REALTIME_COARSE CLOCK_REALTIME
#endif

/* accept() a connection as a non-blocking, close-on-exec descriptor. Returns fd or -errno. */
static inline int fl_accept(int lfd)
{
    int fd;
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
    defined(__DragonFly__)
    do {
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
#else
    do {
        fd = accept(lfd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
#endif
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

/* Small responses are written whole, once per batch: Nagle would only delay them. Fails
 * harmlessly (ignored) on Unix sockets. */
static inline void fl_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Milliseconds on a clock that never jumps; the coarse clock is a vDSO read, cheap per loop turn. */
static inline int64_t fl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t fl_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}

/* Writes "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes, RFC 9110 IMF-fixdate) without strftime,
 * whose names follow the C locale of the process. */
static inline void fl_format_date(int64_t secs, char out[29])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    char *p = out;
#define FL_PUT2(v) (*p++ = (char)('0' + (v) / 10), *p++ = (char)('0' + (v) % 10))
    p[0] = days[tm.tm_wday][0], p[1] = days[tm.tm_wday][1], p[2] = days[tm.tm_wday][2];
    p[3] = ',', p[4] = ' ';
    p += 5;
    FL_PUT2(tm.tm_mday);
    *p++ = ' ';
    p[0] = months[tm.tm_mon][0], p[1] = months[tm.tm_mon][1], p[2] = months[tm.tm_mon][2], p[3] = ' ';
    p += 4;
    int y = tm.tm_year + 1900;
    FL_PUT2(y / 100);
    FL_PUT2(y % 100);
    *p++ = ' ';
    FL_PUT2(tm.tm_hour);
    *p++ = ':';
    FL_PUT2(tm.tm_min);
    *p++ = ':';
    FL_PUT2(tm.tm_sec);
    p[0] = ' ', p[1] = 'G', p[2] = 'M', p[3] = 'T';
#undef FL_PUT2
}

#endif

/* ---- client side (fastloop bench) ------------------------------------------------------ */
#ifndef FL_COMPAT_CLIENT_H
#define FL_COMPAT_CLIENT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

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
    int fd;
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
#else
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
#endif
    int one = 1;
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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

/* The peer's (peer=1) or the local (peer=0) address of socket fd, as text: an IP address
 * and port, or a Unix socket path (port -1; empty for an unnamed peer). Returns the address
 * family, or -errno. */
#include <sys/un.h>
static inline int fl_socket_address(int fd, int peer, char *host, size_t hostlen, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return -errno;
    host[0] = 0;
    *port = -1;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, (socklen_t)hostlen);
        *port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hostlen);
        *port = ntohs(a->sin6_port);
    } else if (ss.ss_family == AF_UNIX) {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
        if (n >= hostlen)
            n = hostlen - 1;
        memcpy(host, a->sun_path, n);
        host[n] = 0;
    }
    return ss.ss_family;
}

/* Sends up to n bytes of file `in` from *off to socket `out`, advancing *off. Returns the bytes
 * sent (0: end of file), or -errno (-EAGAIN: the socket is full). */
#if defined(__linux__)
#include <sys/sendfile.h>
static inline ssize_t fl_sendfile(int out, int in, int64_t *off, size_t n)
{
    off_t o = (off_t)*off;
    ssize_t r = sendfile(out, in, &o, n);
    if (r < 0)
        return -errno;
    *off = (int64_t)o;
    return r;
}
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__DragonFly__)
#include <sys/uio.h>
static inline ssize_t fl_sendfile(int out, int in, int64_t *off, size_t n)
{
    /* Both report what was sent even when they fail with EAGAIN. */
#if defined(__APPLE__)
    off_t len = (off_t)n;
    int rc = sendfile(in, out, (off_t)*off, &len, NULL, 0);
#else
    off_t len = 0;
    int rc = sendfile(in, out, (off_t)*off, n, NULL, &len, 0);
#endif
    if (rc < 0 && len == 0)
        return -errno;
    *off += len;
    return (ssize_t)len;
}
#else
static inline ssize_t fl_sendfile(int out, int in, int64_t *off, size_t n)
{
    char buf[65536];
    ssize_t r = pread(in, buf, n < sizeof buf ? n : sizeof buf, (off_t)*off);
    if (r <= 0)
        return r < 0 ? -errno : 0;
    ssize_t w = send(out, buf, (size_t)r, MSG_NOSIGNAL);
    if (w < 0)
        return -errno;
    *off += w;
    return w;
}
#endif

#endif
