# The answers of Python handlers, written into the connection's output with the GIL held
# (what to write was decided by plan_answer, answer.pyx); and the prebuilt answers C sends by
# itself (errors, static routes).

import os as _os
from http import HTTPStatus as _HTTPStatus

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


cdef Response NOT_FOUND = Response(b"Not Found", 404, content_type="text/plain")
cdef Response SERVER_ERROR = Response(b"Internal Server Error", 500, content_type="text/plain")

cdef enum:
    FL_DIRECT_SEND = 65536  # bodies from this size are sent from their bytes object, not copied


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
    cdef Answer a
    result = call_handler(w, request)
    try:
        a = plan_answer(result, flags)
    except Exception:
        # Nothing of it is written yet: the client gets a clean 500 instead.
        log.exception("fastloop: handler for %s %s returned an invalid answer", request.method, request.path)
        close_body(getattr(result, "body", None))
        a = plan_answer(SERVER_ERROR, flags)
    emit(w, c, a, flags)


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


cdef void emit(Worker w, fl_conn *c, Answer a, int flags) except *:
    """Appends answer a to c's output; a file or an iterable body is then sent at once,
    blocking this thread while the client reads (as a synchronous WSGI worker does).
    Every check was made by plan_answer: nothing here can fail half way through the head."""
    cdef const char *ch
    cdef size_t chlen, blen = 0
    cdef size_t sent
    cdef const char *data
    if a.close or ((c.flags & CONN_F_STREAM) and c.body_left):
        # The answer ends with the connection, or part of a streamed body was not read.
        flags &= ~FL_REQ_KEEP_ALIVE
        c.req_flags &= ~FL_REQ_KEEP_ALIVE
    if a.kind == BODY_BYTES and a.send_body:
        blen = len(a.body)
    ch = w.conn_header(flags)
    chlen = strlen(ch)
    if w.conn_reserve(c, len(a.status_line) + len(SERVER) + FL_DATE_LINE_LEN + 16 + len(a.ctype) + 40
                      + 28 + len(a.fields) + chlen + 2
                      + (blen if blen < FL_DIRECT_SEND else 0)) < 0:
        return
    put_bytes(w, c, a.status_line)
    if not a.own_server:
        put_bytes(w, c, SERVER)
    if not a.own_date:
        w.put_raw(c, w.date_line, FL_DATE_LINE_LEN)
    if a.ctype:
        w.put_raw(c, b"Content-Type: ", 14)
        put_bytes(w, c, a.ctype)
        w.put_raw(c, b"\r\n", 2)
    if a.length is not None:
        w.put_raw(c, b"Content-Length: ", 16)
        put_decimal(w, c, <uint64_t>a.length)  # digits written here: no bytes % formatting
        w.put_raw(c, b"\r\n", 2)
    elif a.chunked:
        w.put_raw(c, b"Transfer-Encoding: chunked\r\n", 28)
    put_bytes(w, c, a.fields)
    w.put_raw(c, ch, chlen)
    w.put_raw(c, b"\r\n", 2)
    if a.kind == BODY_BYTES:
        if blen < FL_DIRECT_SEND:
            w.put_raw(c, a.body, blen)
        else:
            sent = send_direct(w, c, a.body, blen)
            if c.fd >= 0 and sent < blen:
                data = <const char *>a.body  # SAFETY: a holds the body through this call
                w.conn_put(c, data + sent, blen - sent)
    elif not a.send_body:
        close_body(a.body)
    elif a.kind == BODY_FILE:
        send_file(w, c, a)
    else:
        send_pieces(w, c, a.body, a.chunked, a.length)


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


cdef void send_file(Worker w, fl_conn *c, Answer a) except *:
    """Sends a's file from its position, as much as the announced length. A file shorter than
    that cuts the connection once its end is sent: the client must not take the next answer
    for the rest of this body."""
    cdef int rc
    cdef int fd
    cdef int64_t count = min(a.file_len, <int64_t>a.length)
    try:
        fd = a.body.fileno()
        with nogil:
            rc = w.conn_sendfile_blocking(c, fd, a.file_off, count)
        if rc < 0:
            abort_answer(c, "sending a file", OSError(-rc, _os.strerror(-rc)))
        elif count < a.length:
            abort_answer(c, "sending a file", f"{count} bytes, shorter than its content_length {a.length}")
    finally:
        close_body(a.body)


cdef void send_pieces(Worker w, fl_conn *c, object body, bint chunked, object length) except *:
    """Streams an iterable body: each piece goes out as it comes, with the output flushed
    whenever it passes the high-water mark, so memory stays bounded however long it is."""
    cdef int rc
    cdef Py_ssize_t n
    cdef uint64_t sent = 0
    cdef bytes piece
    try:
        for item in body:
            piece = piece_bytes(item)
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
