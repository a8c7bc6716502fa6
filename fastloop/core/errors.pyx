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


class BodyError(Exception):
    """A request body that cannot be read to its end: malformed chunked framing (status 400),
    a client that stopped sending it (408), over the body limit (413) or trailer fields over
    theirs (431); the message is the status's text in core/status.h. Raised by
    Request.stream(); if the handler lets it escape, the client gets that status instead of
    a 500."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
