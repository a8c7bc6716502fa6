# The buffer pool: spare FL_BUF_SIZE blocks a worker reuses for its connections' read and write
# buffers, so a request on a warm connection costs no malloc, and an idle connection, which
# gives its buffers back, costs almost no memory. One pool per worker thread: no lock.

from libc.stdlib cimport free, malloc


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
    block must be put at most once); spare: the blocks it keeps."""

    cdef fl_bufpool p

    def __dealloc__(self):
        fl_bufpool_free(&self.p)

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
