# Requests handed to Python handlers, and the answers written back, with the GIL held.
#
# A Request is built from the connection buffer only when a handler needs it: method, path
# and query are decoded once, the head and body are copied once, and headers are split only
# if the handler asks for them.

from http import HTTPStatus as _HTTPStatus

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE


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


cdef class Request:
    """One HTTP request, as a handler sees it."""

    cdef readonly str method
    cdef readonly str path
    cdef readonly str query
    cdef readonly bint keep_alive
    cdef int minor
    cdef bytes _head
    cdef list _headers
    cdef int _fd                  # the connection's socket while the handler runs, else -1
    cdef object _client
    cdef object _server
    cdef object _body             # bytes; None while a streaming route's body is unread
    cdef Worker _worker           # streaming, while the handler runs: who reads the body
    cdef uint64_t _token

    @property
    def body(self):
        """The whole body as bytes (for a streaming route: what stream() has not yet read)."""
        if self._body is None:
            self._body = b"".join(self.stream())
        return self._body

    def stream(self, Py_ssize_t size=65536):
        """Yields the body in pieces of at most about size bytes, as it arrives: a streaming
        route (App.route(..., stream=True)) reads a large body without buffering all of it.
        For other routes the body is already complete and comes as one piece."""
        if self._worker is None:
            if self._body:
                yield self._body
            return
        while True:
            piece = self._worker.stream_read(self._token, size)
            if not piece:
                return
            yield piece

    @property
    def client(self):
        """The client's (host, port), or its socket path ("" if unnamed) over a Unix socket.
        Read while the handler runs (then cached); None after, or if the client has gone."""
        if self._client is None:
            self._client = socket_address(self._fd, 1)
        return self._client

    @property
    def server(self):
        """The local (host, port) the connection arrived on, or the Unix socket path."""
        if self._server is None:
            self._server = socket_address(self._fd, 0)
        return self._server

    @property
    def version(self):
        return "HTTP/1.1" if self.minor else "HTTP/1.0"

    @property
    def headers(self):
        """[(name, value), ...] in arrival order; names lower-cased, repeats kept."""
        if self._headers is None:
            # The C parser already validated every line, so a plain split is exact here.
            out = []
            for line in self._head.split(b"\r\n")[1:]:
                if line:
                    name, _, value = line.partition(b":")
                    out.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
            self._headers = out
        return self._headers

    def header(self, str name, default=None):
        """The first value of header name (case-insensitive), or default."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def __repr__(self):
        return f"<Request {self.method} {self.path}{'?' if self.query else ''}{self.query}>"


cdef object socket_address(int fd, int peer):
    # Asked only when a handler reads it: no syscall per request otherwise.
    cdef char host[256]
    cdef int port
    cdef int family
    if fd < 0:
        return None
    family = fl_socket_address(fd, peer, host, sizeof(host), &port)
    if family < 0:
        return None
    text = host.decode("utf-8", "surrogateescape")
    return text if port < 0 else (text, port)


cdef str decode_span(const char *p, fl_span s):
    return PyUnicode_DecodeLatin1(p + s.off, s.len, NULL)


cdef Request make_request(const char *p, fl_request *req, uint32_t body_len, int fd):
    cdef Request r = Request.__new__(Request)
    r._fd = fd
    r.method = "GET" if req.flags & FL_REQ_GET else decode_span(p, req.method)
    r.path = decode_span(p, req.path) if req.path.len else "/"
    r.query = decode_span(p, req.query)
    r.minor = req.minor
    r.keep_alive = (req.flags & FL_REQ_KEEP_ALIVE) != 0
    r._head = PyBytes_FromStringAndSize(p, req.head_len - 4)
    r._body = PyBytes_FromStringAndSize(p + req.head_len, body_len) if body_len else b""
    return r


cdef class Response:
    """An answer with a status, headers and a content type. A handler may also return bytes
    (application/octet-stream) or str (text/plain, UTF-8)."""

    cdef public object body
    cdef public int status
    cdef public object headers
    cdef public str content_type

    def __init__(self, body=b"", int status=200, headers=None, content_type=None):
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type


cdef Response NOT_FOUND = Response(b"Not Found", 404, content_type="text/plain")
cdef Response SERVER_ERROR = Response(b"Internal Server Error", 500, content_type="text/plain")


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


cdef void emit(Worker w, fl_conn *c, result, int flags) except *:
    if (c.flags & CONN_F_STREAM) and c.body_left:
        flags &= ~FL_REQ_KEEP_ALIVE  # part of the body was not read: close after answering
    cdef int status = 200
    cdef bytes body, ctype, extra = b"", head, cl
    cdef const char *ch
    cdef size_t chlen, blen
    if type(result) is bytes:
        body = result
        ctype = b"application/octet-stream"
    elif type(result) is str:
        body = (<str>result).encode("utf-8")
        ctype = b"text/plain; charset=utf-8"
    elif isinstance(result, Response):
        r = <Response>result
        status = r.status
        if isinstance(r.body, str):
            body = r.body.encode("utf-8")
            ctype = b"text/plain; charset=utf-8"
        else:
            body = bytes(r.body)
            ctype = b"application/octet-stream"
        if r.content_type is not None:
            ctype = r.content_type.encode("latin-1")
        extra = encode_headers(r.headers)
    else:
        raise TypeError(f"a handler must return bytes, str or Response, not {type(result).__name__}")
    if status < 100 or status > 999:
        raise ValueError(f"invalid status {status}")
    head = STATUS_LINES.get(status) or status_line(status)
    # RFC 9110 6.4.1: no body for HEAD, 1xx, 204 and 304; 204 and 1xx carry no Content-Length.
    blen = 0 if (flags & FL_REQ_HEAD) or status < 200 or status == 204 or status == 304 else len(body)
    cl = b"" if status < 200 or status == 204 else b"Content-Length: %d\r\n" % len(body)
    ch = w.conn_header(flags)
    chlen = strlen(ch)
    if w.conn_reserve(c, len(head) + len(SERVER) + FL_DATE_LINE_LEN + 16 + len(ctype) + len(cl)
                      + len(extra) + chlen + 2 + blen) < 0:
        return
    w.put_raw(c, head, len(head))
    w.put_raw(c, SERVER, len(SERVER))
    w.put_raw(c, w.date_line, FL_DATE_LINE_LEN)
    w.put_raw(c, b"Content-Type: ", 14)
    w.put_raw(c, ctype, len(ctype))
    w.put_raw(c, b"\r\n", 2)
    w.put_raw(c, cl, len(cl))
    w.put_raw(c, extra, len(extra))
    w.put_raw(c, ch, chlen)
    w.put_raw(c, b"\r\n", 2)
    w.put_raw(c, body, blen)
