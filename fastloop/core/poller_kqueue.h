/* poller_kqueue.h - the BSD/macOS backend of poller.h (see the contract there).
 * On Linux it builds against libkqueue (FASTLOOP_POLLER=kqueue), a userspace kqueue over epoll. */
#ifndef FL_POLLER_KQUEUE_H
#define FL_POLLER_KQUEUE_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#define FL_MAX_WAIT_EVENTS 1024

/* OpenBSD has no EVFILT_USER; a self-pipe does the same job there. */
#if defined(EVFILT_USER)
#define FL_KQ_USER_WAKE 1
#define FL_KQ_WAKE_IDENT 1
#endif

typedef struct {
    int kq;
    int wake_rd, wake_wr; /* the self-pipe, when there is no EVFILT_USER */
    struct kevent buf[FL_MAX_WAIT_EVENTS];
} fl_poller;

static inline int fl__kevent_apply(fl_poller *p, struct kevent *changes, int n)
{
    while (kevent(p->kq, changes, n, NULL, 0, NULL) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

#ifndef FL_KQ_USER_WAKE
static inline int fl__set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}
#endif

static inline int fl_poller_open(fl_poller *p)
{
    struct kevent ev;
    int rc;
    p->wake_rd = p->wake_wr = -1;
    p->kq = kqueue();
    if (p->kq < 0)
        return -errno;
#ifdef FL_KQ_USER_WAKE
    EV_SET(&ev, FL_KQ_WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)FL_WAKER_TOKEN);
#else
    int fds[2];
    if (pipe(fds) < 0) {
        rc = -errno;
        goto fail;
    }
    p->wake_rd = fds[0];
    p->wake_wr = fds[1];
    if ((rc = fl__set_nonblock_cloexec(fds[0])) < 0 || (rc = fl__set_nonblock_cloexec(fds[1])) < 0)
        goto fail;
    EV_SET(&ev, p->wake_rd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)FL_WAKER_TOKEN);
#endif
    rc = fl__kevent_apply(p, &ev, 1);
    if (rc == 0)
        return 0;
#ifndef FL_KQ_USER_WAKE
fail:
#endif
    if (p->wake_rd >= 0)
        close(p->wake_rd);
    if (p->wake_wr >= 0)
        close(p->wake_wr);
    close(p->kq);
    p->kq = p->wake_rd = p->wake_wr = -1;
    return rc;
}

static inline void fl_poller_close(fl_poller *p)
{
    if (p->wake_rd >= 0)
        close(p->wake_rd);
    if (p->wake_wr >= 0)
        close(p->wake_wr);
    if (p->kq >= 0)
        close(p->kq);
    p->kq = p->wake_rd = p->wake_wr = -1;
}

static inline int fl_poller_add(fl_poller *p, int fd, uint64_t token)
{
    struct kevent ev[2];
    /* EV_CLEAR is kqueue's edge trigger: the state resets once reported. */
    EV_SET(&ev[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)token);
    EV_SET(&ev[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)token);
    return fl__kevent_apply(p, ev, 2);
}

static inline int fl_poller_add_listener(fl_poller *p, int fd, uint64_t token)
{
    struct kevent ev;
    EV_SET(&ev, fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)token);
    return fl__kevent_apply(p, &ev, 1);
}

static inline int fl_poller_del(fl_poller *p, int fd)
{
    struct kevent ev[2];
    EV_SET(&ev[0], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ev[1], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    /* A listener has no write filter: ENOENT for it is expected and harmless. */
    int rc = fl__kevent_apply(p, ev, 2);
    return rc == -ENOENT ? 0 : rc;
}

static inline int fl_poller_wait(fl_poller *p, fl_event *out, int max, int timeout_ms)
{
    struct timespec ts, *tp = NULL;
    if (max > FL_MAX_WAIT_EVENTS)
        max = FL_MAX_WAIT_EVENTS;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    int n = kevent(p->kq, NULL, 0, p->buf, max, tp);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct kevent *k = &p->buf[i];
        int mask = 0;
        if (k->filter == EVFILT_WRITE)
            mask = FL_WRITABLE;
        else
            mask = FL_READABLE;
        if (k->flags & (EV_EOF | EV_ERROR))
            mask |= FL_HUP | FL_READABLE;
        out[i].token = (uint64_t)(uintptr_t)k->udata;
        out[i].mask = mask;
    }
    return n;
}

static inline int fl_poller_wake(fl_poller *p)
{
#ifdef FL_KQ_USER_WAKE
    struct kevent ev;
    EV_SET(&ev, FL_KQ_WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, (void *)(uintptr_t)FL_WAKER_TOKEN);
    return fl__kevent_apply(p, &ev, 1);
#else
    char c = 1;
    if (write(p->wake_wr, &c, 1) < 0 && errno != EAGAIN)
        return -errno; /* EAGAIN: the pipe is full, a wake-up is pending anyway */
    return 0;
#endif
}

static inline void fl_poller_wake_drain(fl_poller *p)
{
#ifndef FL_KQ_USER_WAKE
    char buf[64];
    while (read(p->wake_rd, buf, sizeof buf) > 0) {
    }
#else
    (void)p; /* EV_CLEAR already reset the user event when it was reported */
#endif
}

static inline int fl_poller_fds(fl_poller *p, int *out)
{
    int n = 0;
    out[n++] = p->kq;
    if (p->wake_rd >= 0) {
        out[n++] = p->wake_rd;
        out[n++] = p->wake_wr;
    }
    return n;
}

#endif
