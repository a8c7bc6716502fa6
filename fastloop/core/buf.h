/* buf.h - a growable byte buffer for socket I/O: the live bytes are p[start:end).
 *
 * Readers append at the tail (reserve, then recv into fl_buf_tail, then end += n, or
 * fl_buf_put) and parsers consume from the head. Consuming only moves `start`, so a parser
 * never copies; the copy happens at most once per reserve, and only when the room it asks
 * for is missing: first by sliding the live bytes back to 0 (compacting), and only if that
 * is not enough by moving them to a block twice as large (or more).
 *
 * Static inline, no Python: callable without the GIL. Every function that can fail returns
 * 0 or -ENOMEM and leaves the buffer as it was on failure. A zeroed fl_buf is a valid empty
 * buffer that owns nothing; fl_buf_free returns it to that state.
 *
 *   size_t fl_buf_len(const fl_buf *b)    live bytes (end - start)
 *   char  *fl_buf_head(const fl_buf *b)   first live byte (p + start)
 *   char  *fl_buf_tail(const fl_buf *b)   first free byte after them (p + end)
 *   size_t fl_buf_room(const fl_buf *b)   free bytes after the tail (cap - end)
 *   int    fl_buf_reserve(fl_buf *b, size_t need)   room for `need` more bytes after end
 *   size_t fl_buf_plan(fl_buf *b, size_t need, size_t min)   reserve's first half, for callers
 *          with blocks of their own (the server's pool): 0 when b has room for need (after
 *          compacting, if that was enough), else the capacity of the block b must move to
 *          (doubling b->cap, or min when b has no block), or SIZE_MAX when none is large enough
 *   char  *fl_buf_move(fl_buf *b, char *p, size_t cap)   its second half: the live bytes move
 *          to the new block p of cap bytes; returns the old block (NULL if none) to free
 *   void   fl_buf_put(fl_buf *b, const void *p, size_t n)   append; only after a reserve(n)
 *   void   fl_buf_consume(fl_buf *b, size_t n)   drop n live bytes from the head (n <= len)
 *   void   fl_buf_free(fl_buf *b)
 *
 * Pointers from fl_buf_head/tail are valid until the next reserve or free.
 */
#ifndef FL_BUF_H
#define FL_BUF_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The first block: one recv() of a typical response or request head fits. */
#define FL_BUF_MIN 16384

typedef struct {
    char *p;
    size_t cap, start, end;
} fl_buf;

static inline size_t fl_buf_len(const fl_buf *b) { return b->end - b->start; }
static inline char *fl_buf_head(const fl_buf *b) { return b->p + b->start; }
static inline char *fl_buf_tail(const fl_buf *b) { return b->p + b->end; }
static inline size_t fl_buf_room(const fl_buf *b) { return b->cap - b->end; }

static inline size_t fl_buf_plan(fl_buf *b, size_t need, size_t min)
{
    size_t len = b->end - b->start;
    if (b->p != NULL && b->cap - b->end >= need)
        return 0;
    if (b->p != NULL && b->cap - len >= need) {
        /* Sliding back is enough: one copy of the live bytes, no allocation. */
        memmove(b->p, b->p + b->start, len);
        b->start = 0;
        b->end = len;
        return 0;
    }
    if (need > SIZE_MAX - len)
        return SIZE_MAX;
    size_t cap = b->cap ? b->cap : min;
    while (cap < len + need) {
        if (cap > SIZE_MAX / 2)
            return SIZE_MAX;
        cap *= 2;
    }
    return cap;
}

static inline char *fl_buf_move(fl_buf *b, char *p, size_t cap)
{
    /* A new block and a copy rather than realloc: realloc would also copy the consumed bytes. */
    size_t len = b->end - b->start;
    char *old = b->p;
    if (len)
        memcpy(p, b->p + b->start, len);
    b->p = p;
    b->cap = cap;
    b->start = 0;
    b->end = len;
    return old;
}

static inline int fl_buf_reserve(fl_buf *b, size_t need)
{
    size_t cap = fl_buf_plan(b, need, FL_BUF_MIN);
    if (cap == 0)
        return 0;
    if (cap == SIZE_MAX)
        return -ENOMEM;
    char *p = (char *)malloc(cap);
    if (p == NULL)
        return -ENOMEM;
    free(fl_buf_move(b, p, cap));
    return 0;
}

static inline void fl_buf_put(fl_buf *b, const void *p, size_t n)
{
    memcpy(b->p + b->end, p, n);
    b->end += n;
}

static inline void fl_buf_consume(fl_buf *b, size_t n)
{
    b->start += n;
    if (b->start >= b->end)
        b->start = b->end = 0; /* empty: the next read starts at the block's beginning */
}

static inline void fl_buf_free(fl_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->cap = b->start = b->end = 0;
}

#endif
