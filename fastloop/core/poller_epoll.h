/* poller_epoll.h - the Linux backend of poller.h (see the contract there). */
#ifndef FL_POLLER_EPOLL_H
#define FL_POLLER_EPOLL_H

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FL_MAX_WAIT_EVENTS 1024

typedef struct {
    int epfd;
    int wakefd; /* eventfd: one counter, one descriptor, cheaper than a pipe */
    struct epoll_event buf[FL_MAX_WAIT_EVENTS];
} fl_poller;

static inline int fl__epoll_ctl(fl_poller *p, int op, int fd, uint32_t events, uint64_t token)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = token;
    /* h2o retries epoll_ctl on EINTR; Linux does not document it there, but it is harmless. */
    while (epoll_ctl(p->epfd, op, fd, &ev) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static inline int fl_poller_open(fl_poller *p)
{
    p->wakefd = -1;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        return -errno;
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wakefd < 0) {
        int err = errno;
        close(p->epfd);
        p->epfd = -1;
        return -err;
    }
    int rc = fl__epoll_ctl(p, EPOLL_CTL_ADD, p->wakefd, EPOLLIN | EPOLLET, FL_WAKER_TOKEN);
    if (rc < 0) {
        close(p->wakefd);
        close(p->epfd);
        p->wakefd = p->epfd = -1;
    }
    return rc;
}

static inline void fl_poller_close(fl_poller *p)
{
    if (p->wakefd >= 0)
        close(p->wakefd);
    if (p->epfd >= 0)
        close(p->epfd);
    p->wakefd = p->epfd = -1;
}

static inline int fl_poller_add(fl_poller *p, int fd, uint64_t token)
{
    /* Both directions once, for life (as mio does): no epoll_ctl per write that would block. */
    return fl__epoll_ctl(p, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, token);
}

static inline int fl_poller_add_listener(fl_poller *p, int fd, uint64_t token)
{
    return fl__epoll_ctl(p, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLET, token);
}

static inline int fl_poller_del(fl_poller *p, int fd)
{
    return fl__epoll_ctl(p, EPOLL_CTL_DEL, fd, 0, 0);
}

static inline int fl_poller_wait(fl_poller *p, fl_event *out, int max, int timeout_ms)
{
    if (max > FL_MAX_WAIT_EVENTS)
        max = FL_MAX_WAIT_EVENTS;
    int n = epoll_wait(p->epfd, p->buf, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = p->buf[i].events;
        int mask = 0;
        if (e & EPOLLIN)
            mask |= FL_READABLE;
        if (e & EPOLLOUT)
            mask |= FL_WRITABLE;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            mask |= FL_HUP | FL_READABLE; /* reading is how the owner learns EOF or the error */
        out[i].token = p->buf[i].data.u64;
        out[i].mask = mask;
    }
    return n;
}

static inline int fl_poller_wake(fl_poller *p)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake-up is already pending, which is enough. */
    if (write(p->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static inline void fl_poller_wake_drain(fl_poller *p)
{
    uint64_t n;
    /* One read takes the whole counter and resets it (an eventfd without EFD_SEMAPHORE): a
     * second one would only find EAGAIN, one syscall more per hand-over from a handler thread.
     * A wake-up that lands after this read makes the next wait return at once: harmless. */
    if (read(p->wakefd, &n, sizeof n) < 0) {
        /* EAGAIN: a spurious event, nothing was pending */
    }
}

static inline int fl_poller_fds(fl_poller *p, int *out)
{
    out[0] = p->epfd;
    out[1] = p->wakefd;
    return 2;
}

#endif
