# The buffer pool: spare FL_BUF_SIZE blocks a worker reuses for its connections' read and write
# buffers, so a request on a warm connection costs no malloc, and an idle connection, which
# gives its buffers back, costs almost no memory. One pool per worker thread: no lock.

from libc.errno cimport ENOMEM
from libc.stdint cimport SIZE_MAX
from libc.stdlib cimport free, malloc

from fastloop.core cimport buf


cdef char *fl_bufpool_get(fl_bufpool *p) noexcept nogil:
    """A block of FL_BUF_SIZE bytes, owned by the caller: the spare put last, else a new one.
    NULL when out of memory."""
    if p.n:
        p.n -= 1
        return p.bufs[p.n]
    return <char *>malloc(FL_BUF_SIZE)


cdef void fl_bufpool_put(fl_bufpool *p, char *buf, size_t cap) noexcept nogil:
    """Takes back buf, a malloc'd block of cap bytes: kept as a spare if it is FL_BUF_SIZE and
    fewer than FL_POOL_MAX are kept, else freed."""
    if cap == FL_BUF_SIZE and p.n < FL_POOL_MAX:
        if p.bufs == NULL:
            p.bufs = <char **>malloc(FL_POOL_MAX * sizeof(char *))
            if p.bufs == NULL:
                free(buf)
                return
        p.bufs[p.n] = buf
        p.n += 1
    else:
        free(buf)


cdef int fl_bufpool_reserve(fl_bufpool *p, buf.fl_buf *b, size_t need, size_t cap_max) noexcept nogil:
    """fl_buf_reserve (buf.h) with the pool's blocks: room for need more bytes after b.end, in
    a block of at most cap_max bytes. A first block of FL_BUF_SIZE comes from the pool, and the
    block b leaves when it grows goes back to it. Returns 0, or -ENOMEM (b unchanged)."""
    cdef size_t cap, old_cap
    cdef char *nb
    if b.p == NULL and need <= FL_BUF_SIZE and FL_BUF_SIZE <= cap_max:
        # The usual case, once per request on a keep-alive connection: a spare block, nothing
        # to move (fl_buf_plan would come to the same, in more steps).
        b.p = fl_bufpool_get(p)
        if b.p == NULL:
            return -ENOMEM
        b.cap = FL_BUF_SIZE
        b.start = b.end = 0
        return 0
    if b.p == NULL:
        b.start = b.end = 0
    cap = buf.fl_buf_plan(b, need, FL_BUF_SIZE)
    if cap == 0:
        return 0
    if cap == SIZE_MAX or cap > cap_max:  # SIZE_MAX: no block is large enough
        return -ENOMEM
    nb = fl_bufpool_get(p) if cap == FL_BUF_SIZE else <char *>malloc(cap)
    if nb == NULL:
        return -ENOMEM
    old_cap = b.cap
    nb = buf.fl_buf_move(b, nb, cap)
    if nb != NULL:
        fl_bufpool_put(p, nb, old_cap)
    return 0


cdef void fl_bufpool_free(fl_bufpool *p) noexcept nogil:
    """Frees every spare block; the pool is empty (and still usable) afterwards."""
    cdef int i
    for i in range(p.n):
        free(p.bufs[i])
    free(p.bufs)
    p.bufs = NULL
    p.n = 0


# A thin Python view, so tests can check the pool's contract directly (like poller.pyx).
BUF_SIZE = FL_BUF_SIZE
POOL_MAX = FL_POOL_MAX


cdef class BufPool:
    """fl_bufpool for tests: blocks are named by address. get() -> address; alloc(cap) -> the
    address of a new block not from the pool; put(address, cap) gives a block to the pool (a
    block must be put at most once); spare: the blocks it keeps. And one fl_buf on the pool:
    reserve(need, cap_max) -> 0 or -ENOMEM, append(data), consume(n), and its fields."""

    cdef fl_bufpool p
    cdef buf.fl_buf b

    def __dealloc__(self):
        if self.b.p != NULL:
            fl_bufpool_put(&self.p, self.b.p, self.b.cap)
        fl_bufpool_free(&self.p)

    def reserve(self, size_t need, size_t cap_max):
        return fl_bufpool_reserve(&self.p, &self.b, need, cap_max)

    def append(self, bytes data):
        if <size_t>len(data) > buf.fl_buf_room(&self.b):
            raise ValueError("reserve first")
        buf.fl_buf_put(&self.b, <const char *>data, len(data))

    def consume(self, size_t n):
        if n > buf.fl_buf_len(&self.b):
            raise ValueError("more than the buffer holds")
        self.b.start += n  # as the worker does: an emptied buffer keeps its offsets

    @property
    def buf(self):
        """(address, cap, start, end, live bytes) of the fl_buf."""
        data = b"" if self.b.p == NULL else self.b.p[self.b.start:self.b.end]
        return <size_t>self.b.p, self.b.cap, self.b.start, self.b.end, data

    def get(self):
        cdef char *b = fl_bufpool_get(&self.p)
        if b == NULL:
            raise MemoryError()
        return <size_t>b

    def alloc(self, size_t cap):
        cdef char *b = <char *>malloc(cap)
        if b == NULL:
            raise MemoryError()
        return <size_t>b

    def put(self, size_t address, size_t cap):
        # SAFETY: only addresses from get() or alloc() of this view, each put once (the contract
        # above): the pool then owns the block.
        fl_bufpool_put(&self.p, <char *>address, cap)

    @property
    def spare(self):
        return self.p.n
