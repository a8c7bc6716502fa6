# The load generator's one place where an errno becomes a Python exception, and the size of
# its per-errno counter tables (their names are given in fastloop/bench.py).

from libc.stdint cimport uint64_t


cdef enum:
    FB_NERRNO = 256       # errno values counted one by one; larger ones share the last slot

cdef int raise_errno(int err, str what) except -1
cdef int fb_errno_slot(int err) noexcept nogil
cdef dict errno_counts(const uint64_t *table)
