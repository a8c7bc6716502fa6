# The only place where an errno becomes a Python exception or a name.

import errno as _errno
import os as _os


cdef int raise_errno(int err, str syscall) except -1:
    """Raises the OSError subclass for err (ConnectionResetError, BlockingIOError, ...),
    naming the syscall that failed."""
    raise OSError(err, f"{syscall}: {_os.strerror(err)}")


cdef dict errno_table(const uint64_t *table):
    """{errno name: count} for the non-zero entries of a per-errno counter array."""
    cdef int i
    cdef dict out = {}
    for i in range(FL_NERRNO):
        if table[i]:
            out[_errno.errorcode.get(i, "E%d" % i) if i else "INTERNAL"] = table[i]
    return out
