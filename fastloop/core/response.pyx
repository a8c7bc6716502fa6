# The prebuilt answers C sends by itself (errors, static routes), the timeouts the loops
# count, and calling the handler a route table gives for a request (on a handler thread).

import os as _os
from http import HTTPStatus as _HTTPStatus

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.string cimport memcmp, memcpy


DEFAULT_TIMEOUTS = {
    "header": 10.0,               # a request must arrive within this (slowloris)
    "idle": 5.0,                  # keep-alive between requests
    "write": 30.0,                # a client that stops reading its answers
    "linger": 2.0,                # draining input after the last answer before closing
    "body": 60.0,                 # between two reads of a request body (nginx client_body_timeout)
    "ws_close": 5.0,              # a WebSocket close handshake: for the other side's close frame
    "ws_ping": 20.0,              # a quiet WebSocket is pinged after this (0: never; uvicorn: 20)
    "ws_pong": 20.0,              # ... and closed if its pong does not come within this
}

TIMER_NAMES = (None, "header", "idle", "write", "linger", "body", "ws_close", "ws_ping", "ws_pong")

# The statuses C answers by itself, and their texts: status.h, the one list.
FL_STATUSES = tuple(fl_statuses[i] for i in range(FL_NSTATUS))
STATUS_TEXTS = {fl_statuses[i]: fl_status_texts[i].decode() for i in range(FL_NSTATUS)}


cdef bytes SERVER = b"Server: fastloop\r\n"

cdef fl_static fl_error_responses[FL_NSTATUS]
cdef list _error_keep = []


cdef void build_error_responses() except *:
    # Prebuilt so C can reject a request without the GIL. Each is complete but for the Date.
    for i, status in enumerate(FL_STATUSES):
        body = _HTTPStatus(status).phrase.encode("latin-1")
        head = (STATUS_LINES[status] + SERVER + b"Content-Type: text/plain\r\n"
                + b"Content-Length: %d\r\nConnection: close\r\n" % len(body))
        if status == 426:
            head += b"Sec-WebSocket-Version: 13\r\n"  # the versions this server speaks (RFC 6455 4.4)
        _error_keep.append((head, body))
        # SAFETY: both bytes objects live in _error_keep for the life of the module.
        fl_error_responses[i].head = PyBytes_AS_STRING(head)
        fl_error_responses[i].head_len = PyBytes_GET_SIZE(head)
        fl_error_responses[i].body = PyBytes_AS_STRING(body)
        fl_error_responses[i].body_len = PyBytes_GET_SIZE(body)


build_error_responses()


# Matching a static route and writing a prebuilt error answer: C, for the loops.

cdef int fl_match_path(const fl_static *routes, int n, const char *p, fl_span path) noexcept nogil:
    """Index of the route whose path is p's span, or -1."""
    cdef int i
    for i in range(n):
        if routes[i].path_len == path.len and memcmp(routes[i].path, p + path.off, path.len) == 0:
            return i
    return -1


cdef inline size_t fl_error_len(const fl_static *s) noexcept nogil:
    return s.head_len + FL_DATE_LINE_LEN + 2 + s.body_len


cdef size_t fl_put_error(char *out, const fl_static *s, const char *date_line) noexcept nogil:
    """Writes the prebuilt error answer s, with the Date line, at out (fl_error_len(s) bytes
    of room); returns its length."""
    memcpy(out, s.head, s.head_len)
    memcpy(out + s.head_len, date_line, FL_DATE_LINE_LEN)
    memcpy(out + s.head_len + FL_DATE_LINE_LEN, b"\r\n", 2)
    memcpy(out + s.head_len + FL_DATE_LINE_LEN + 2, s.body, s.body_len)
    return fl_error_len(s)


def static_response_head(int status, str content_type, headers, Py_ssize_t body_len):
    """The fixed part of a static route's answer: everything but Date and Connection."""
    return (STATUS_LINES.get(status) or status_line(status)) + SERVER + \
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n" + \
        b"Content-Length: %d\r\n" % body_len + encode_headers(headers)


cdef Response SERVER_ERROR = Response(b"Internal Server Error", 500, content_type="text/plain")

# A route table's Match (fastloop/routes.py) is a tuple read by position: its field order.
cdef enum:
    MATCH_HANDLER = 0
    MATCH_PARAMS = 1
    MATCH_METHODS = 2


cdef inline bint is_match(object m) noexcept:
    # Read by position without bounds checks (boundscheck=False): check the shape first.
    return isinstance(m, tuple) and PyTuple_GET_SIZE(m) > MATCH_METHODS


cdef object call_handler(dict exact, object lookup, Request request):
    """Routes request through a RouteTable's exact dict and lookup (fastloop/routes.py) and
    runs the handler of the Match. 404 and 405 are the lookup's to decide: they come back as
    Matches whose handler answers them. Never raises for a failing handler (a 500); a lookup
    that fails or returns no Match raises (answer() then cuts the connection)."""
    match = exact.get(request.path)
    if match is None or not is_match(match) or request.method not in (<tuple>match)[MATCH_METHODS]:
        match = lookup(request)
        if not is_match(match):
            raise TypeError(f"a route lookup returns a fastloop.routes.Match, not {match!r}")
    handler = (<tuple>match)[MATCH_HANDLER]
    params = (<tuple>match)[MATCH_PARAMS]
    try:
        if params is None:
            return handler(request)
        return handler(request, **params)
    except BodyError as exc:
        return Response(str(exc).encode(), exc.status, content_type="text/plain")
    except Exception:
        log.exception("fastloop: handler for %s %s raised", request.method, request.path)
        return SERVER_ERROR
