# The answers of Python handlers, written into the connection's output with the GIL held;
# and the prebuilt answers C sends by itself (errors, static routes).

import os as _os
from http import HTTPStatus as _HTTPStatus
from json import dumps as _json_dumps

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EINTR, errno


DEFAULT_TIMEOUTS = {
    "header": 10.0,               # a request must arrive within this (slowloris)
    "idle": 5.0,                  # keep-alive between requests
    "write": 30.0,                # a client that stops reading its answers
    "linger": 2.0,                # draining input after the last answer before closing
    "body": 60.0,                 # between two reads of a request body (nginx client_body_timeout)
}

TIMER_NAMES = (None, "header", "idle", "write", "linger", "body")

# Statuses C answers by itself; fl_status_index maps each to its counter slot.
FL_STATUSES = (400, 408, 413, 414, 431, 501, 505, 503)


cdef int fl_status_index(int status) noexcept nogil:
    if status == 400: return 0
    if status == 408: return 1
    if status == 413: return 2
    if status == 414: return 3
    if status == 431: return 4
    if status == 501: return 5
    if status == 505: return 6
    return 7


cdef bytes status_line(int status):
    try:
        phrase = _HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


cdef dict STATUS_LINES = {s.value: status_line(s.value) for s in _HTTPStatus}
cdef bytes SERVER = b"Server: fastloop\r\n"

cdef fl_static fl_error_responses[FL_NSTATUS]
cdef list _error_keep = []


cdef void build_error_responses() except *:
    # Prebuilt so C can reject a request without the GIL. Each is complete but for the Date.
    for i, status in enumerate(FL_STATUSES):
        body = _HTTPStatus(status).phrase.encode("latin-1")
        head = (STATUS_LINES[status] + SERVER + b"Content-Type: text/plain\r\n"
                + b"Content-Length: %d\r\nConnection: close\r\n" % len(body))
        _error_keep.append((head, body))
        # SAFETY: both bytes objects live in _error_keep for the life of the module.
        fl_error_responses[i].head = PyBytes_AS_STRING(head)
        fl_error_responses[i].head_len = PyBytes_GET_SIZE(head)
        fl_error_responses[i].body = PyBytes_AS_STRING(body)
        fl_error_responses[i].body_len = PyBytes_GET_SIZE(body)


build_error_responses()


def static_response_head(int status, str content_type, headers, Py_ssize_t body_len):
    """The fixed part of a static route's answer: everything but Date and Connection."""
    return (STATUS_LINES.get(status) or status_line(status)) + SERVER + \
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n" + \
        b"Content-Length: %d\r\n" % body_len + encode_headers(headers)


cdef bytes encode_headers(headers):
    if not headers:
        return b""
    if hasattr(headers, "items"):
        headers = headers.items()
    parts = []
    for name, value in headers:
        line = f"{name}: {value}"
        if "\r" in line or "\n" in line or ":" in str(name):
            raise ValueError(f"invalid response header {name!r}")  # header injection
        parts.append(line.encode("latin-1") + b"\r\n")
    return b"".join(parts)


cdef class Response:
    """An answer: a status, headers and a body, with its content type.

    body: bytes-like; str (sent as UTF-8, text/plain by default); a dict or list (sent as JSON,
    application/json); a binary file object (sent with sendfile from its current position); or
    any other iterable of bytes/str pieces, streamed as they come (chunked, or as is when
    content_length is given). A handler may also return bytes, str, a dict or a list directly.
    content_type: None for the body's default, "" for no Content-Type header.
    reason: the status line's phrase, if not the standard one.
    content_length: the length to announce when it is known but not the body's own, e.g. for
    an iterable, or for HEAD answers whose body is left out."""

    cdef public object body
    cdef public int status
    cdef public object headers
    cdef public str content_type
    cdef public str reason
    cdef public object content_length

    def __init__(self, body=b"", int status=200, headers=None, content_type=None, reason=None,
                 content_length=None):
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.reason = reason
        self.content_length = content_length


cdef Response NOT_FOUND = Response(b"Not Found", 404, content_type="text/plain")
cdef Response SERVER_ERROR = Response(b"Internal Server Error", 500, content_type="text/plain")

cdef enum:
    FL_DIRECT_SEND = 65536  # bodies from this size are sent from their bytes object, not copied

cdef bytes OCTETS = b"application/octet-stream"
cdef bytes TEXT = b"text/plain; charset=utf-8"
cdef bytes JSON = b"application/json"

# How a body goes out
cdef enum:
    BODY_BYTES = 0
    BODY_FILE = 1
    BODY_ITER = 2


cdef object call_handler(Worker w, Request request):
    """Routes request and runs its handler. Never raises: a failing handler answers 500."""
    entry = w.routes.get(request.path)
    if entry is None:
        # Not an exact path: the app may still match it (patterns, mounted WSGI apps).
        entry = w.app._resolve(request)
        if entry is None:
            return NOT_FOUND
    handler, methods = <tuple>entry
    if request.method not in methods:
        return Response(b"Method Not Allowed", 405, {"Allow": ", ".join(methods)}, "text/plain")
    try:
        return handler(request)
    except BodyError as exc:
        return Response(str(exc).encode(), exc.status, content_type="text/plain")
    except Exception:
        log.exception("fastloop: handler for %s %s raised", request.method, request.path)
        return SERVER_ERROR


cdef void respond(Worker w, fl_conn *c, Request request, int flags) except *:
    """Runs the handler for request and appends its answer to c's output."""
    result = call_handler(w, request)
    try:
        emit(w, c, result, flags)
    except Exception:
        log.exception("fastloop: handler for %s %s returned an invalid answer", request.method, request.path)
        emit(w, c, SERVER_ERROR, flags)


cdef tuple body_of(object body, bytes ctype):
    """(kind, bytes or the object, default content type) for a body."""
    if isinstance(body, bytes):
        return BODY_BYTES, body, ctype or OCTETS
    if isinstance(body, str):
        return BODY_BYTES, (<str>body).encode("utf-8"), ctype or TEXT
    if isinstance(body, (dict, list)):
        return BODY_BYTES, _json_dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), ctype or JSON
    if isinstance(body, (bytearray, memoryview)):
        return BODY_BYTES, bytes(body), ctype or OCTETS
    if body is None:
        return BODY_BYTES, b"", ctype or OCTETS
    if hasattr(body, "fileno") and hasattr(body, "seek"):
        return BODY_FILE, body, ctype or OCTETS
    if hasattr(body, "__iter__"):
        return BODY_ITER, body, ctype or OCTETS
    raise TypeError(f"cannot send a body of type {type(body).__name__}")


cdef dict CTYPES = {}  # content type -> its encoded header value, for the few an app uses


cdef bytes content_type_bytes(str content_type):
    cdef bytes value = CTYPES.get(content_type)
    if value is None:
        if "\r" in content_type or "\n" in content_type:
            raise ValueError(f"invalid content type {content_type!r}")  # header injection
        value = content_type.encode("latin-1")
        if len(CTYPES) < 256:
            CTYPES[content_type] = value
    return value


cdef inline void put_bytes(Worker w, fl_conn *c, bytes b):
    w.put_raw(c, b, len(b))


cdef void put_decimal(Worker w, fl_conn *c, uint64_t n):
    # conn_reserve made room: at most 20 digits.
    cdef char digits[24]
    cdef int i = 24
    while True:
        i -= 1
        digits[i] = <char>(48 + n % 10)
        n //= 10
        if n == 0:
            break
    w.put_raw(c, digits + i, 24 - i)


cdef void emit(Worker w, fl_conn *c, result, int flags) except *:
    """Appends the answer to c's output; a file or an iterable body is then sent at once,
    blocking this thread while the client reads (as a synchronous WSGI worker does)."""
    cdef int status = 200, kind
    cdef bytes ctype = b"", extra = b"", head, framing = b""
    cdef const char *ch
    cdef size_t chlen, blen = 0
    cdef object body, length = None
    cdef bint send_body, chunked = False
    cdef int64_t file_off = 0, file_len = 0
    cdef size_t sent
    cdef const char *data
    if (c.flags & CONN_F_STREAM) and c.body_left:
        flags &= ~FL_REQ_KEEP_ALIVE  # part of the body was not read: close after answering
    if isinstance(result, Response):
        r = <Response>result
        status = r.status
        if r.content_type is not None:
            ctype = content_type_bytes(r.content_type)
        if type(r.body) is bytes:  # the common case, without the general dispatch
            kind = BODY_BYTES
            body = r.body
            if r.content_type is None:
                ctype = OCTETS
        else:
            kind, body, default_ctype = body_of(r.body, ctype)
            if r.content_type is None:
                ctype = default_ctype
        if r.headers:
            extra = encode_headers(r.headers)
        length = r.content_length
        if r.reason is not None:
            if "\r" in r.reason or "\n" in r.reason:
                raise ValueError("invalid reason phrase")
            head = f"HTTP/1.1 {status} {r.reason}\r\n".encode("latin-1")
        else:
            head = STATUS_LINES.get(status) or status_line(status)
    else:
        kind, body, ctype = body_of(result, b"")
        head = STATUS_LINES[200]
    if status < 100 or status > 999:
        raise ValueError(f"invalid status {status}")
    # RFC 9110 6.4.1: no body for HEAD, 1xx, 204 and 304; 204 and 1xx carry no Content-Length.
    send_body = not ((flags & FL_REQ_HEAD) or status < 200 or status == 204 or status == 304)
    if kind == BODY_BYTES:
        blen = len(body) if send_body else 0
        if length is None:
            length = len(body)
        elif send_body and length != len(body):
            raise ValueError(f"content_length {length} but a body of {len(body)} bytes")
    elif kind == BODY_FILE:
        file_off = body.tell()
        file_len = _os.fstat(body.fileno()).st_size - file_off
        if length is None:
            length = file_len
        file_len = min(file_len, length)
    elif length is None and send_body:
        if flags & FL_REQ_HTTP10:
            flags &= ~FL_REQ_KEEP_ALIVE  # no chunked coding in 1.0: the close ends the body
        else:
            chunked = True
            framing = b"Transfer-Encoding: chunked\r\n"
    if status < 200 or status == 204:
        length = None
    ch = w.conn_header(flags)
    chlen = strlen(ch)
    if w.conn_reserve(c, len(head) + len(SERVER) + FL_DATE_LINE_LEN + 16 + len(ctype) + 40
                      + len(framing) + len(extra) + chlen + 2
                      + (blen if blen < FL_DIRECT_SEND else 0)) < 0:
        return
    put_bytes(w, c, head)
    put_bytes(w, c, SERVER)
    w.put_raw(c, w.date_line, FL_DATE_LINE_LEN)
    if ctype:
        w.put_raw(c, b"Content-Type: ", 14)
        put_bytes(w, c, ctype)
        w.put_raw(c, b"\r\n", 2)
    if length is not None:
        w.put_raw(c, b"Content-Length: ", 16)
        put_decimal(w, c, <uint64_t>length)  # digits written here: no bytes % formatting
        w.put_raw(c, b"\r\n", 2)
    put_bytes(w, c, framing)
    put_bytes(w, c, extra)
    w.put_raw(c, ch, chlen)
    w.put_raw(c, b"\r\n", 2)
    if kind == BODY_BYTES:
        if blen < FL_DIRECT_SEND:
            w.put_raw(c, body, blen)
        else:
            sent = send_direct(w, c, body, blen)
            if c.fd >= 0 and sent < blen:
                data = <const char *>body  # SAFETY: body lives through this call
                w.conn_put(c, data + sent, blen - sent)
    elif not send_body:
        close_body(body)
    elif kind == BODY_FILE:
        send_file(w, c, body, file_off, file_len)
    else:
        send_pieces(w, c, body, chunked, length)


cdef size_t send_direct(Worker w, fl_conn *c, bytes body, size_t n):
    """Sends what it can of a large body straight from the bytes object, after the head, if
    the socket takes it now; returns the bytes sent. The rest is copied into the output as
    usual: no copy (and no large buffer) for the common case, and never a blocked thread."""
    cdef const char *p = body
    cdef size_t sent = 0
    cdef ssize_t r
    # SAFETY: body is referenced by the caller for the whole call; sends are non-blocking.
    with nogil:
        if w.conn_flush(c) == 0 and c.wsent == c.wlen:
            while sent < n:
                r = send(c.fd, p + sent, n - sent, MSG_NOSIGNAL)
                if r > 0:
                    sent += <size_t>r
                    w.counters.bytes_out += <uint64_t>r
                elif r < 0 and errno == EINTR:
                    continue
                else:
                    break  # EAGAIN: the rest waits in the output; an error shows at the next flush
    return sent


cdef void close_body(object body):
    close = getattr(body, "close", None)
    if close is not None:
        close()


cdef void abort_answer(fl_conn *c, str what, object error):
    # The head is out already: no 500 can follow. Cut the connection, so the client sees an
    # incomplete answer rather than a wrong one.
    if error is not None:
        log.error("fastloop: %s: %s", what, error)
    c.flags |= CONN_F_CLOSE_AFTER
    c.flags &= ~CONN_F_LINGER


cdef void send_file(Worker w, fl_conn *c, object body, int64_t off, int64_t count) except *:
    cdef int rc
    cdef int fd = body.fileno()
    try:
        with nogil:
            rc = w.conn_sendfile_blocking(c, fd, off, count)
        if rc < 0:
            abort_answer(c, "sending a file", OSError(-rc, _os.strerror(-rc)))
    finally:
        close_body(body)


cdef void send_pieces(Worker w, fl_conn *c, object body, bint chunked, object length) except *:
    """Streams an iterable body: each piece goes out as it comes, with the output flushed
    whenever it passes the high-water mark, so memory stays bounded however long it is."""
    cdef int rc
    cdef Py_ssize_t n
    cdef uint64_t sent = 0
    try:
        for piece in body:
            if isinstance(piece, str):
                piece = (<str>piece).encode("utf-8")
            elif not isinstance(piece, bytes):
                piece = bytes(piece)
            n = len(piece)
            if n == 0:
                continue
            sent += n
            if length is not None and sent > length:
                abort_answer(c, "an iterable body", "longer than its content_length")
                return
            if w.conn_reserve(c, n + 24) < 0:
                return
            if chunked:
                hexlen = b"%x\r\n" % n
                put_bytes(w, c, hexlen)
            put_bytes(w, c, piece)
            if chunked:
                w.put_raw(c, b"\r\n", 2)
            if c.wlen - c.wsent > FL_HIGH_WATER:
                with nogil:
                    rc = w.conn_flush_blocking(c)
                if rc < 0:
                    abort_answer(c, "streaming an answer", OSError(-rc, _os.strerror(-rc)))
                    return
        if length is not None and sent != length:
            abort_answer(c, "an iterable body", "shorter than its content_length")
            return
        if chunked and w.conn_put(c, b"0\r\n\r\n", 5) < 0:
            return
    except Exception as exc:
        log.exception("fastloop: the body iterable of an answer raised")
        abort_answer(c, "streaming an answer", None)
    finally:
        close_body(body)
