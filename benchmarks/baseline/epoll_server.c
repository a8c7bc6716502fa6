/* epoll_server.c - the "C baseline" for fastloop benchmarks.
 *
 * Theory of operation
 * -------------------
 * One thread, one epoll instance, every socket nonblocking and registered
 * edge-triggered (EPOLLET), so each readiness edge is reported once and the
 * loop must drain a socket until EAGAIN before it waits again. The server
 * does the least work an HTTP/1.1 server can do: it finds the end of each
 * request head ("\r\n\r\n") and answers it with one fixed response. That makes
 * it the physical floor fastloop is measured against: syscalls plus a memmem.
 *
 * Pipelining: every complete head in the input buffer is answered, and all the
 * responses produced from one read are sent with one send() (up to OUT_CAP
 * bytes, about 240 responses, per send). Reading stops at EAGAIN, or earlier at
 * a short read (see serve()). Request bodies are not supported (the benchmarks
 * send GET only); a body would be misread as the start of the next request.
 *
 * Usage: epoll_server PORT   (binds 127.0.0.1; PORT 0 picks a free port)
 * Prints "listening on PORT" once bound. Exits with 0 on SIGTERM or SIGINT.
 */
#define _GNU_SOURCE /* accept4, memmem, epoll_pwait */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP (16 * 1024)  /* largest request head (or pipelined tail) kept */
#define OUT_CAP (32 * 1024) /* responses gathered before one send() */
#define MAX_EVENTS 256

typedef struct {
    int fd;
    int close_after; /* a request asked for Connection: close */
    size_t inlen;
    size_t outoff, outlen; /* unsent bytes are out[outoff..outlen) */
    char in[IN_CAP];
    char out[OUT_CAP];
} conn;

/* The two fixed responses, prebuilt: one for keep-alive, and one that also
 * says "Connection: close", which RFC 7230 section 6.6 asks for when the server
 * closes after it (wrk, for one, counts a close without it as a read error).
 * The Date value sits at date_at and is rewritten in place at most once per
 * second, so building a response is one memcpy. */
typedef struct {
    char buf[256];
    size_t len, date_at;
} fixed_response;

static fixed_response keep_resp, close_resp;
static time_t date_sec = -1;

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

/* Refreshes the cached RFC 7231 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT",
 * always 29 bytes). Called after every wait; time() is a vDSO call, so the
 * check is cheap and the date is formatted only when the second changes. */
static void refresh_date(void) {
    time_t now = time(NULL);
    if (now == date_sec)
        return;
    struct tm tm;
    char buf[32];
    gmtime_r(&now, &tm);
    /* No setlocale() call, so strftime uses the "C" locale: English names. */
    if (strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 29) {
        memcpy(keep_resp.buf + keep_resp.date_at, buf, 29);
        memcpy(close_resp.buf + close_resp.date_at, buf, 29);
        date_sec = now;
    }
}

/* Lays out one response around a 29-byte placeholder for the date. */
static void build_response(fixed_response *r, const char *extra_header) {
    int at = snprintf(r->buf, sizeof r->buf,
                      "HTTP/1.1 200 OK\r\nServer: baseline\r\nContent-Type: text/plain\r\n"
                      "Content-Length: 13\r\n%sDate: ",
                      extra_header);
    r->date_at = (size_t)at;
    r->len = (size_t)at + (size_t)snprintf(r->buf + at, sizeof r->buf - (size_t)at,
                                           "%29s\r\n\r\nHello, World!", "");
}

/* Returns 1 if the head [p, p+n) must end the connection: an explicit
 * "Connection: close" (any case, possibly among other tokens), or HTTP/1.0,
 * whose keep-alive we do not implement. */
static int wants_close(const char *p, size_t n) {
    const char *end = p + n, *eol = memmem(p, n, "\r\n", 2);
    if (eol - p >= 8 && memcmp(eol - 8, "HTTP/1.0", 8) == 0)
        return 1;
    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!eol)
            break;
        if (eol - line < 11 || strncasecmp(line, "connection:", 11) != 0)
            continue;
        for (const char *v = line + 11; v + 5 <= eol; v++)
            if (strncasecmp(v, "close", 5) == 0)
                return 1;
    }
    return 0;
}

/* Appends one response per complete head in c->in and drops those heads.
 * Returns how many were answered. Stops at the first Connection: close (later
 * pipelined requests are never answered) or when out cannot take another. */
static int answer(conn *c) {
    size_t off = 0;
    int n = 0;
    /* Room for the longer response, so either one fits. */
    while (!c->close_after && c->outlen + close_resp.len <= OUT_CAP) {
        /* A partial head is searched again from its start after each read;
         * heads here are small, so remembering the scan position is not worth it. */
        char *head = c->in + off, *end = memmem(head, c->inlen - off, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t len = (size_t)(end + 4 - head);
        c->close_after = wants_close(head, len);
        const fixed_response *r = c->close_after ? &close_resp : &keep_resp;
        memcpy(c->out + c->outlen, r->buf, r->len);
        c->outlen += r->len;
        off += len;
        n++;
    }
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    return n;
}

/* Sends what is pending. Returns 0 when all was sent or the socket is full
 * (EPOLLOUT will bring us back), -1 when the connection is dead. */
static int flush(conn *c) {
    while (c->outoff < c->outlen) {
        /* MSG_NOSIGNAL: a peer that went away must give EPIPE, not kill us. */
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->outoff += (size_t)w;
    }
    c->outoff = c->outlen = 0;
    return 0;
}

static void conn_close(conn *c) {
    close(c->fd); /* also removes it from the epoll set: the fd is never dup'ed */
    free(c);
}

/* Runs one connection as far as it can go without blocking: flush, answer what
 * is buffered, read more, repeat. Output is flushed before reading again, so a
 * slow reader stops us reading (backpressure) instead of growing a buffer. */
static void serve(conn *c, uint32_t events) {
    int drained = 0;
    if (events & EPOLLERR)
        goto dead;
    for (;;) {
        if (flush(c) < 0)
            goto dead;
        if (c->outlen)
            return; /* socket full: wait for EPOLLOUT */
        if (c->close_after)
            goto dead;
        if (answer(c))
            continue;
        if (drained)
            return;
        if (c->inlen == IN_CAP)
            goto dead; /* a head larger than IN_CAP: not ours to serve */
        size_t room = IN_CAP - c->inlen;
        ssize_t r = recv(c->fd, c->in + c->inlen, room, 0);
        if (r == 0)
            goto dead; /* peer closed; complete heads were answered above */
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            goto dead;
        }
        c->inlen += (size_t)r;
        /* A short read means the receive queue was empty at that moment: data
         * arriving later raises a new edge, so the read() that would only say
         * EAGAIN is skipped (nginx does the same on Linux). Not when the peer
         * hung up: that edge was already consumed, so read on to see the EOF. */
        if ((size_t)r < room && !(events & (EPOLLRDHUP | EPOLLHUP)))
            drained = 1;
    }
dead:
    conn_close(c);
}

/* Drains the listen queue: with EPOLLET, connections left in it would not be
 * reported again until yet another one arrives. */
static void accept_all(int lfd, int ep) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                perror("accept4"); /* e.g. EMFILE: the backlog keeps them */
            return;
        }
        int one = 1; /* responses are written whole; Nagle would only delay them */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->close_after = 0;
        c->inlen = c->outoff = c->outlen = 0;
        /* EPOLLOUT is registered once, up front: with EPOLLET it only fires
         * when a full send buffer drains, so it costs nothing otherwise. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            conn_close(c);
        }
    }
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("listen");
        exit(1);
    }
    printf("listening on %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    /* Block the stop signals everywhere except inside epoll_pwait: a signal
     * that lands between two waits is then delivered by the next wait (EINTR)
     * instead of being missed until the timeout. */
    sigset_t stopset, waitset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    sigprocmask(SIG_BLOCK, &stopset, &waitset);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake the wait */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    build_response(&keep_resp, "");
    build_response(&close_resp, "Connection: close\r\n");
    refresh_date();
    int lfd = listen_on(atoi(argv[1]));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        perror("epoll");
        return 1;
    }
    struct epoll_event evs[MAX_EVENTS];
    while (!stopping) {
        /* 1000 ms: an idle server still refreshes its Date once a second. */
        int n = epoll_pwait(ep, evs, MAX_EVENTS, 1000, &waitset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_pwait");
            return 1;
        }
        refresh_date();
        /* SAFETY: each data.ptr is a live conn. epoll reports an fd at most
         * once per batch, and a conn is freed only while handling its own
         * event, so no later event in this batch can point to freed memory. */
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                accept_all(lfd, ep);
            else
                serve(evs[i].data.ptr, evs[i].events);
        }
    }
    /* Open connections are released by exit: the kernel closes their fds. */
    close(ep);
    close(lfd);
    return 0;
}
