/* poller_kqueue.h - the BSD/macOS backend of poller.h (see the contract there).
 * On Linux it builds against libkqueue (FASTLOOP_POLLER=kqueue), a userspace kqueue over epoll.
 *
 * libkqueue differs from a kernel kqueue in ways that break an edge-triggered server unless
 * this file works around them (all of it under FL_KQ_LIBKQUEUE):
 *
 *  1. close() does not remove a descriptor's knotes (libkqueue's BUGS.md, and
 *     https://github.com/mheily/libkqueue/issues/99, /issues/58): the kernel drops the fd from
 *     libkqueue's epoll set, but the knote stays in libkqueue's index. When accept() hands the
 *     same number out again, EV_ADD finds that stale knote and only "modifies" it (new udata),
 *     never re-registering the fd with epoll, so the new connection gets no events at all.
 *     fl_poller_add therefore first deletes whatever knotes the number still has (libkqueue
 *     takes EV_DELETE of a stale knote: epoll's ENOENT/EBADF is treated as "already gone").
 *
 *  2. One fd's read and write filters share a single epoll registration inside libkqueue
 *     (https://github.com/mheily/libkqueue/issues/59 is the history of that design). Adding the
 *     second filter rewrites it with EPOLL_CTL_MOD from the first one's EPOLLIN/EPOLLOUT bits
 *     plus the new filter's own flags, so EPOLLRDHUP survives only if EVFILT_READ comes last.
 *     Without it a request and the client's FIN that arrive together are reported as plain
 *     EVFILT_READ with data and no EV_EOF: the caller stops at its short read, no further edge
 *     comes, and the half-closed connection waits for its idle timeout instead of closing.
 *     fl_poller_add therefore adds EVFILT_WRITE first.
 *
 *  3. Events are lost when the event list fills up
 *     (https://github.com/mheily/libkqueue/issues/89, open): libkqueue asks epoll_wait for as
 *     many events as the caller has room for, but an fd that is readable and writable turns one
 *     epoll event into two kevents; when the list is full the rest of what epoll returned is
 *     dropped, and with EV_CLEAR (EPOLLET) those edges never come back. A burst of a few
 *     hundred connections does this. fl_poller_wait cannot tell which events were dropped, only
 *     that the list came back full, so it then replays every registration it knows of as a
 *     spurious FL_READABLE | FL_WRITABLE | FL_HUP event (a listener: FL_READABLE), spread over
 *     the next calls; FL_HUP makes the caller read to EAGAIN, so a FIN that was queued behind
 *     data is found too. The caller must ignore tokens it no longer knows, as poller.h requires
 *     of every event anyway: descriptors closed without fl_poller_del stay in the replay table
 *     until their number is registered again.
 *
 *  Smaller differences, which this file cannot hide:
 *   - On EPOLLERR libkqueue reads SO_ERROR (to put it in fflags), which clears it. A server's
 *     next send() then fails with EPIPE where epoll's caller sees ECONNRESET (io_errors counts
 *     differ), and a caller that learns a failed non-blocking connect() from SO_ERROR after
 *     FL_WRITABLE | FL_HUP reads 0 there (the errno is only in the kevent's fflags, which
 *     fl_event has no field for).
 *   - EVFILT_USER is an eventfd inside libkqueue; a NOTE_TRIGGER from another thread wakes a
 *     waiter because libkqueue drops its per-kqueue lock while it waits.
 */
#ifndef FL_POLLER_KQUEUE_H
#define FL_POLLER_KQUEUE_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#define FL_MAX_WAIT_EVENTS 1024

/* Tokens travel in udata, a pointer: with 32-bit pointers a connection's generation (the high
 * half of its token) would be cut off and every event of it dropped as stale. */
_Static_assert(sizeof(void *) >= sizeof(uint64_t),
               "fastloop's kqueue backend needs 64-bit pointers");

/* libkqueue (the only kqueue on Linux) defines LIBKQUEUE in its sys/event.h. */
#if defined(LIBKQUEUE) || defined(__linux__)
#define FL_KQ_LIBKQUEUE 1
/* libkqueue caps one kevent() call at its MAX_KEVENT (512) events. The full-list check of (3)
 * needs the cap the caller passes to be the one libkqueue applies, so ask for no more. */
#define FL_KQ_WAIT_CAP 512
#else
#define FL_KQ_WAIT_CAP FL_MAX_WAIT_EVENTS
#endif

/* OpenBSD has no EVFILT_USER; a self-pipe does the same job there. */
#if defined(EVFILT_USER)
#define FL_KQ_USER_WAKE 1
#define FL_KQ_WAKE_IDENT 1
#endif

#ifdef FL_KQ_LIBKQUEUE
/* What fl_poller_add registered for one descriptor number: replayed after a full list (3). */
typedef struct {
    uint64_t token;
    int state; /* FL_KQ_REG_NONE, _CONN or _LISTENER */
} fl_kq_reg;

#define FL_KQ_REG_NONE 0
#define FL_KQ_REG_CONN 1
#define FL_KQ_REG_LISTENER 2
#endif

typedef struct {
    int kq;
    int wake_rd, wake_wr; /* the self-pipe, when there is no EVFILT_USER */
#ifdef FL_KQ_LIBKQUEUE
    fl_kq_reg *regs; /* indexed by descriptor number */
    int nregs;       /* entries allocated */
    int replay_left; /* entries the current replay still has to visit (0: no replay) */
    int replay_at;   /* the next entry it visits; it wraps around */
#endif
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

#define FL_KQ_MAX_CHANGES 4

/* Applies n changes, each with EV_RECEIPT so that every one is attempted and answered in order
 * (without it, kevent() stops at the first failing change when it has no room to report it).
 * Returns 0, or the first -errno other than ENOENT on an EV_DELETE (nothing to delete is fine). */
static inline int fl__kevent_receipts(fl_poller *p, struct kevent *changes, int n)
{
    int i, rc = 0;
#ifdef EV_RECEIPT
    struct kevent res[FL_KQ_MAX_CHANGES];
    struct timespec zero = {0, 0};
    int got;
    for (i = 0; i < n; i++)
        changes[i].flags |= EV_RECEIPT;
    /* Every change yields a receipt, so res fills up and kevent() returns without collecting
     * pending events (the zero timeout guarantees it never waits). */
    while ((got = kevent(p->kq, changes, n, res, n, &zero)) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    for (i = 0; i < got; i++) {
        int err = (res[i].flags & EV_ERROR) ? (int)res[i].data : 0;
        if (err == 0 || ((res[i].flags & EV_DELETE) && err == ENOENT))
            continue;
        if (rc == 0)
            rc = -err;
    }
#else
    for (i = 0; i < n; i++) { /* one change per call: a failure cannot hide the rest */
        int err = fl__kevent_apply(p, &changes[i], 1);
        if (err == 0 || ((changes[i].flags & EV_DELETE) && err == -ENOENT))
            continue;
        if (rc == 0)
            rc = err;
    }
#endif
    return rc;
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

/* ---- the replay table of (3), libkqueue only ------------------------------------------------ */

#ifdef FL_KQ_LIBKQUEUE
static inline int fl__kq_remember(fl_poller *p, int fd, uint64_t token, int state)
{
    if (fd < 0)
        return -EBADF;
    if (fd >= p->nregs) {
        int cap = p->nregs ? p->nregs : 64;
        while (cap <= fd)
            cap *= 2;
        fl_kq_reg *regs = (fl_kq_reg *)realloc(p->regs, (size_t)cap * sizeof(fl_kq_reg));
        if (regs == NULL)
            return -ENOMEM;
        memset(regs + p->nregs, 0, (size_t)(cap - p->nregs) * sizeof(fl_kq_reg));
        p->regs = regs;
        p->nregs = cap;
    }
    p->regs[fd].token = token;
    p->regs[fd].state = state;
    return 0;
}

static inline void fl__kq_forget(fl_poller *p, int fd)
{
    if (fd >= 0 && fd < p->nregs)
        p->regs[fd].state = FL_KQ_REG_NONE;
}

/* Fills out with up to max replayed events; a replay visits every entry once, round the table,
 * even when a new full list restarts it (then it goes round once more from where it is). */
static inline int fl__kq_replay(fl_poller *p, fl_event *out, int max)
{
    int n = 0;
    while (p->replay_left > 0 && n < max) {
        fl_kq_reg *r;
        if (p->replay_at >= p->nregs)
            p->replay_at = 0;
        r = &p->regs[p->replay_at++];
        p->replay_left--;
        if (r->state == FL_KQ_REG_NONE)
            continue;
        out[n].token = r->token;
        out[n].mask = r->state == FL_KQ_REG_LISTENER ? FL_READABLE
                                                     : (FL_READABLE | FL_WRITABLE | FL_HUP);
        n++;
    }
    return n;
}
#endif

/* ---- the API of poller.h ------------------------------------------------------------------- */

static inline int fl_poller_open(fl_poller *p)
{
    struct kevent ev;
    int rc;
    p->wake_rd = p->wake_wr = -1;
#ifdef FL_KQ_LIBKQUEUE
    p->regs = NULL;
    p->nregs = p->replay_left = p->replay_at = 0;
#endif
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
#ifdef FL_KQ_LIBKQUEUE
    free(p->regs);
    p->regs = NULL;
    p->nregs = p->replay_left = p->replay_at = 0;
#endif
}

static inline int fl_poller_del(fl_poller *p, int fd)
{
    struct kevent ev[2];
#ifdef FL_KQ_LIBKQUEUE
    fl__kq_forget(p, fd);
#endif
    EV_SET(&ev[0], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ev[1], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    /* A listener has no write filter: ENOENT for it is expected and harmless. With receipts
     * the write filter is still deleted when the read one was already gone. */
    return fl__kevent_receipts(p, ev, 2);
}

static inline int fl_poller_add(fl_poller *p, int fd, uint64_t token)
{
    struct kevent ev[4];
    int n = 0, rc;
#ifdef FL_KQ_LIBKQUEUE
    if ((rc = fl__kq_remember(p, fd, token, FL_KQ_REG_CONN)) < 0)
        return rc;
    /* (1): forget knotes left by an earlier descriptor with this number that was closed
     * without EV_DELETE; ENOENT, the usual answer, is ignored. */
    EV_SET(&ev[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ev[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
#endif
    /* EV_CLEAR is kqueue's edge trigger: the state resets once reported. Write before read,
     * for libkqueue's sake (2); the order makes no difference to a kernel kqueue. */
    EV_SET(&ev[n++], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)token);
    EV_SET(&ev[n++], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)token);
    rc = fl__kevent_receipts(p, ev, n);
    if (rc < 0)
        (void)fl_poller_del(p, fd); /* not half registered: the caller closes fd next */
    return rc;
}

static inline int fl_poller_add_listener(fl_poller *p, int fd, uint64_t token)
{
    struct kevent ev[3];
    int n = 0, rc;
#ifdef FL_KQ_LIBKQUEUE
    if ((rc = fl__kq_remember(p, fd, token, FL_KQ_REG_LISTENER)) < 0)
        return rc;
    EV_SET(&ev[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ev[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
#endif
    EV_SET(&ev[n++], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)token);
    rc = fl__kevent_receipts(p, ev, n);
#ifdef FL_KQ_LIBKQUEUE
    if (rc < 0)
        fl__kq_forget(p, fd);
#endif
    return rc;
}

static inline int fl_poller_wait(fl_poller *p, fl_event *out, int max, int timeout_ms)
{
    struct timespec ts, *tp = NULL;
    if (max > FL_KQ_WAIT_CAP)
        max = FL_KQ_WAIT_CAP;
#ifdef FL_KQ_LIBKQUEUE
    if (p->replay_left > 0) {
        /* Replay first, without waiting: whatever epoll holds meanwhile stays queued there. */
        int n = fl__kq_replay(p, out, max);
        if (n > 0 || p->replay_left > 0)
            return n;
    }
#endif
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
#ifdef FL_KQ_LIBKQUEUE
    if (n == max) /* (3): the list is full, so libkqueue may have dropped events */
        p->replay_left = p->nregs;
#endif
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
