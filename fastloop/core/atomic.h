/* atomic.h - what threads share without a lock: open connections under limit_concurrency, the
 * reference counts of what loops and handler threads share (core/handoff.pyx), the counters of
 * the handler threads, and the flags one thread raises for others.
 *
 * Every such access goes through here, never through a plain read or write: without the GIL
 * (free-threaded CPython, or any nogil code) two threads touching one plain int, one of them
 * writing, is a data race, undefined behaviour in C11 even when the value looks harmless.
 * Relaxed order unless said otherwise: these values order no other memory. */
#ifndef FL_ATOMIC_H
#define FL_ATOMIC_H

#include <stdint.h>

/* Adds v and returns the new value. Relaxed: the count orders nothing else. */
static inline int64_t fl_atomic_add(int64_t *p, int64_t v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

/* Reference counts shared by a loop and handler threads: acquire-release, so the thread that
 * drops the last reference sees every write made before the others dropped theirs. */
static inline int fl_atomic_add_int(int *p, int v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL);
}

/* A flag raised once by one thread and polled by others (fl_inbox.stopping). */
static inline int fl_atomic_load_int(const int *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void fl_atomic_store_int(int *p, int v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* A counter that several threads add to (fl_atomic_add) and another reads. */
static inline int64_t fl_atomic_load(const int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#endif
