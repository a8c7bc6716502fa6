# errno -> exception for the load generator (see errors.pxd).

import os as _os


cdef int raise_errno(int err, str what) except -1:
    """Raises the OSError subclass for err (ConnectionRefusedError, ...), naming the step."""
    raise OSError(err, f"{what}: {_os.strerror(err)}")


cdef int fb_errno_slot(int err) noexcept nogil:
    return err if 0 <= err < FB_NERRNO else FB_NERRNO - 1


cdef dict errno_counts(const uint64_t *table):
    """{errno: count} for the non-zero slots of a counter table (0: an internal error)."""
    return {i: table[i] for i in range(FB_NERRNO) if table[i]}
