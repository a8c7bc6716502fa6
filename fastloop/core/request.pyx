# The Request a Python handler gets, built from the connection buffer with the GIL held.
#
# It is built only when a handler needs it: method, path and query are decoded once, the head
# and body are copied once, and headers, query arguments and addresses are worked out only if
# the handler asks for them.

from urllib.parse import parse_qsl as _parse_qsl

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1


cdef class Request:
    """One HTTP request, as a handler sees it."""

    cdef readonly str method
    cdef readonly str path
    cdef readonly str query
    cdef readonly bint keep_alive
    cdef int minor
    cdef bytes _head
    cdef object _headers
    cdef int _fd                  # the connection's socket while the handler runs, else -1
    cdef object _client
    cdef object _server
    cdef object _args
    cdef object _items
    cdef object _body             # bytes; None while a streaming route's body is unread
    cdef object _authority        # absolute-form: the target's authority (str); else None
    cdef Worker _worker           # streaming, while the handler runs: who reads the body
    cdef uint64_t _token
    # Set before the handler runs by fastloop.proxy.FrontApp (trusted proxy headers,
    # --root-path); None: the connection's own value. client, scheme, host and root_path read them.
    cdef public object override_client
    cdef public object override_scheme
    cdef public object override_host
    cdef public object override_root_path

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
        Read while the handler runs (then cached); None after, or if the client has gone.
        Behind a trusted proxy (--proxy-headers), the address the proxy reports instead."""
        if self.override_client is not None:
            return self.override_client
        if self._client is None:
            self._client = socket_address(self._fd, 1)
        return self._client

    @property
    def scheme(self):
        """"http", or what a trusted proxy reports ("https" behind a TLS-terminating one)."""
        return "http" if self.override_scheme is None else self.override_scheme

    @property
    def host(self):
        """The host the request is for: from a trusted proxy (--proxy-headers), else as sent
        (RFC 9112 3.2.2): the authority of an absolute-form target ("GET http://a.example/
        HTTP/1.1"), which wins over Host, else the Host header's value; None if there is
        neither (HTTP/1.0). Validated by the parser."""
        if self.override_host is not None:
            return self.override_host
        if self._authority is not None:
            return self._authority
        return self.headers.get("host")

    @property
    def root_path(self):
        """The path prefix the application is served under (--root-path), "" by default."""
        return "" if self.override_root_path is None else self.override_root_path

    @property
    def server(self):
        """The local (host, port) the connection arrived on, or the Unix socket path."""
        if self._server is None:
            self._server = socket_address(self._fd, 0)
        return self._server

    @property
    def query_args(self):
        """{name: first value} of the query string, decoded (see query_items for repeats)."""
        if self._args is None:
            args = {}
            for name, value in self.query_items:
                args.setdefault(name, value)
            self._args = args
        return self._args

    @property
    def query_items(self):
        """[(name, value), ...] of the query string, decoded, in order, repeats kept."""
        if self._items is None:
            self._items = _parse_qsl(self.query, keep_blank_values=True) if self.query else []
        return self._items

    @property
    def version(self):
        return "HTTP/1.1" if self.minor else "HTTP/1.0"

    @property
    def headers(self):
        """The header fields as Headers: (name, value) pairs in arrival order, names
        lower-cased, repeats kept; get(name) / getall(name) / name in headers ignore case."""
        if self._headers is None:
            # The C parser already validated every line, so a plain split is exact here.
            out = Headers()
            for line in self._head.split(b"\r\n")[1:]:
                if line:
                    name, _, value = line.partition(b":")
                    out.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
            self._headers = out
        return self._headers

    def header(self, str name, default=None):
        """The first value of header name (case-insensitive), or default."""
        return self.headers.get(name, default)

    def __repr__(self):
        return f"<Request {self.method} {self.path}{'?' if self.query else ''}{self.query}>"


cdef object socket_address(int fd, int peer):
    # Asked only when a handler reads it: no syscall per request otherwise.
    cdef char host[256]
    cdef int port = -1
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


cdef Request make_request(const char *p, fl_conn *c, uint64_t body_len):
    """The Request for c's current request, whose head starts at p; body_len bytes of body
    follow the head in the same buffer, so body_len <= FL_RBUF_MAX fits Py_ssize_t."""
    cdef Request r = Request.__new__(Request)
    cdef fl_request_line *line = &c.line
    r._fd = c.fd
    r.method = "GET" if c.req_flags & FL_REQ_GET else decode_span(p, line.method)
    r.path = decode_span(p, line.path) if line.path.len else "/"
    r.query = decode_span(p, line.query) if line.query.len else ""
    r.minor = line.minor
    if line.authority.len:
        r._authority = decode_span(p, line.authority)
    r.keep_alive = (c.req_flags & FL_REQ_KEEP_ALIVE) != 0
    r._head = PyBytes_FromStringAndSize(p, c.head_len - 4)
    r._body = PyBytes_FromStringAndSize(p + c.head_len, <Py_ssize_t>body_len) if body_len else b""
    return r


class Headers(list):
    """A request's header fields: a list of (name, value) pairs, names lower-cased, in order,
    repeats kept, with lookups by name that ignore case."""

    def get(self, name, default=None):
        """The first value of name, or default."""
        name = name.lower()
        for n, v in self:
            if n == name:
                return v
        return default

    def getall(self, name):
        """Every value of name, in order (e.g. several Cookie or X-Forwarded-For lines)."""
        name = name.lower()
        return [v for n, v in self if n == name]

    def __getitem__(self, key):
        if isinstance(key, str):
            value = self.get(key)
            if value is None:
                raise KeyError(key)
            return value
        return list.__getitem__(self, key)

    def __contains__(self, item):
        if isinstance(item, str):
            return self.get(item) is not None
        return list.__contains__(self, item)

    def keys(self):
        return [n for n, _ in self]

    def items(self):
        return list(self)
