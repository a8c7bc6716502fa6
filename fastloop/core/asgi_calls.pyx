# ASGI 3 applications beside the loop, part 2a: what an HTTP call's receive() and send()
# hand over besides messages: the errors send() raises, the awaitable it returns when there
# is nothing to wait for, the phases of an answer, whether a job's client is gone, and the
# bodies of the answers the server gives itself.

cimport cython


class ClientDisconnected(OSError):
    """send() on a connection the client has closed (the ASGI spec asks for an OSError)."""


class InvalidMessage(RuntimeError):
    """What send() raises for a message the spec does not allow (counted and logged once)."""


cdef dict DISCONNECT = {"type": "http.disconnect"}


cdef class _Sent:
    """What send() returns when the message is posted and nothing is to wait for: an
    awaitable that is done at once (its own iterator, stateless, so one serves every send)."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration

    def throw(self, typ, val=None, tb=None):
        raise typ if val is None else val

    @cython.linetrace(False)  # holds a lock of handoff.pyx: see there
    @cython.profile(False)
    def close(self):
        pass


cdef _Sent SENT = _Sent()

# AsgiCall.phase: how far the answer of the current request has gone
cdef enum:
    PH_NONE = 0         # nothing sent
    PH_STARTED = 1      # http.response.start received, nothing written
    PH_BODY = 2         # the head is out, body messages follow (more_body)
    PH_TRAILERS = 3     # the last body message is out; trailers follow
    PH_DONE = 4         # the answer is complete


@cython.linetrace(False)  # holds a lock of handoff.pyx: see there
@cython.profile(False)
cdef inline bint job_gone(fl_job *j) noexcept nogil:
    cdef bint gone
    pthread_mutex_lock(&j.lock)
    gone = j.gone != 0
    pthread_mutex_unlock(&j.lock)
    return gone


cdef dict STATUS_BODIES = {400: b"Bad Request\n", 408: b"Request Timeout\n",
                           413: b"Payload Too Large\n", 500: b"Internal Server Error\n"}
