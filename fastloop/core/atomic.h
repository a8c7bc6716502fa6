/* atomic.h - the one counter worker threads share: open connections under limit_concurrency. */
#ifndef FL_ATOMIC_H
#define FL_ATOMIC_H

#include <stdint.h>

/* Adds v and returns the new value. Relaxed: the count orders nothing else. */
static inline int64_t fl_atomic_add(int64_t *p, int64_t v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

#endif
