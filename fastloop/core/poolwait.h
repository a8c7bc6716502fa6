/* poolwait.h - the clock and the timed wait of the handler threads' pool (core/handoff.pyx).
 *
 * An idle handler thread that watches the queue (fl_pool_wait) waits on the pool's condition
 * variable until a deadline on this clock. Linux and the BSDs let a condition variable wait on
 * CLOCK_MONOTONIC (pthread_condattr_setclock); macOS has no such attribute, so there both the
 * clock and the wait are the wall clock: a jump of it only makes one watch shorter or longer,
 * and the watch is a heuristic (when another thread joins), never a correctness condition. */
#ifndef FL_POOLWAIT_H
#define FL_POOLWAIT_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#ifdef __APPLE__
#define FL_POOL_CLOCK CLOCK_REALTIME
#else
#define FL_POOL_CLOCK CLOCK_MONOTONIC
#endif

/* Nanoseconds on the clock fl_cond_wait_until() waits on. */
static inline int64_t fl_pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(FL_POOL_CLOCK, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Initialises c for fl_cond_wait_until(): 0 or an errno value (pthread_cond_init's). */
static inline int fl_cond_init_timed(pthread_cond_t *c)
{
#ifdef __APPLE__
    return pthread_cond_init(c, NULL);
#else
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
#endif
}

/* pthread_cond_timedwait until deadline_ns (fl_pool_now_ns()'s clock): 0 when woken (or
 * spuriously), ETIMEDOUT once the deadline passed. Call with m locked, as pthread_cond_wait. */
static inline int fl_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ns / 1000000000);
    ts.tv_nsec = (long)(deadline_ns % 1000000000);
    return pthread_cond_timedwait(c, m, &ts);
}

#endif
