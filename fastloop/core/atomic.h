/* atomic.h - counters shared between threads: open connections under limit_concurrency, and the
 * reference counts of what loops and handler threads share (core/handoff.pyx). */
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

#endif
