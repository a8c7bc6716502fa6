/* poller.h - picks fastloop's readiness backend at compile time.
 *
 * Linux gets epoll; BSD and macOS get kqueue. FASTLOOP_POLLER_KQUEUE (set by setup.py when
 * FASTLOOP_POLLER=kqueue) forces kqueue on Linux too, built against libkqueue, so that backend
 * can be compiled and exercised where it is not native.
 *
 * Each backend defines the same static inline API and returns 0 (or a count) on success and
 * -errno on failure; nothing here raises or touches Python.
 *
 *   int  fl_poller_open(fl_poller *p);
 *   void fl_poller_close(fl_poller *p);
 *   int  fl_poller_add(fl_poller *p, int fd, uint64_t token);
 *       Registers fd for readable AND writable readiness, edge-triggered (EPOLLET / EV_CLEAR),
 *       once for its whole life. Callers must read, write and accept until EAGAIN, because an
 *       edge is reported once. Spurious events are normal and must be harmless.
 *   int  fl_poller_add_listener(fl_poller *p, int fd, uint64_t token);
 *       Same, readable only.
 *   int  fl_poller_del(fl_poller *p, int fd);
 *       Optional before close(): closing a descriptor removes it from epoll and from a native
 *       kqueue. (libkqueue keeps it: its backend clears leftovers when a number is re-added.)
 *   int  fl_poller_wait(fl_poller *p, fl_event *out, int max, int timeout_ms);
 *       Fills out[0..n) and returns n; EINTR returns 0 so the caller re-checks its flags.
 *       Any flag may be spurious, FL_HUP included: it means "read until EAGAIN or EOF",
 *       never "closed" by itself.
 *   int  fl_poller_wake(fl_poller *p);
 *       Thread-safe: makes a concurrent or the next fl_poller_wait return FL_WAKER_TOKEN.
 *   void fl_poller_wake_drain(fl_poller *p);
 *       Called by the owner after it sees FL_WAKER_TOKEN, before it reads its inbox.
 *   int  fl_poller_fds(fl_poller *p, int *out);  descriptors the poller owns (for tests).
 */
#ifndef FL_POLLER_H
#define FL_POLLER_H

#include <stdint.h>

#define FL_READABLE 1
#define FL_WRITABLE 2
#define FL_HUP      4 /* peer shut down its side, or the socket is in error */

/* A token no connection slot can produce: slots use their index in the low 32 bits. */
#define FL_WAKER_TOKEN    UINT64_MAX
#define FL_LISTENER_TOKEN (UINT64_MAX - 1)

typedef struct {
    uint64_t token;
    int mask;
} fl_event;

#if defined(FASTLOOP_POLLER_KQUEUE) || defined(__APPLE__) || defined(__FreeBSD__) || \
    defined(__OpenBSD__) || defined(__NetBSD__) || defined(__DragonFly__)
#include "poller_kqueue.h"
#define FL_POLLER_NAME "kqueue"
#elif defined(__linux__)
#include "poller_epoll.h"
#define FL_POLLER_NAME "epoll"
#else
#error "fastloop needs epoll or kqueue"
#endif

#endif
