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
#include "fdflags.h"

#ifndef MSG_NOSIGNAL
/* macOS has no MSG_NOSIGNAL; fl_finish_socket (fdflags.h) sets SO_NOSIGPIPE instead. */
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
    return fl_finish_socket(fd, 1);
#else
    do {
        fd = accept(lfd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    return fl_finish_socket(fd, 0);
#endif
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

/* Keeps line = "Date: <IMF-fixdate>\r\n" (37 bytes) current: rewritten only when the second
 * changes since *sec (the cache of the caller, one per thread: each loop and handler thread). */
static inline void fl_refresh_date_line(int64_t *sec, char line[37])
{
    int64_t now = fl_wall_seconds();
    if (now == *sec)
        return;
    *sec = now;
    memcpy(line, "Date: ", 6);
    fl_format_date(now, line + 6);
    memcpy(line + 35, "\r\n", 2);
}

#endif

/* ---- socket addresses and sendfile (the server's responses and request objects) ---- */
#ifndef FL_COMPAT_IO_H
#define FL_COMPAT_IO_H

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

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
