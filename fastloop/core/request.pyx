# The Request a Python handler gets, built on its handler thread from the job the loop filled.
#
# Method, path and query are decoded once, the head and body are copied once, and headers,
# query arguments and addresses are worked out only if the handler asks for them. While the
# handler runs the Request holds its job (the handler's reference): addresses are read from
# the connection's socket under the job's lock, and a streaming body is taken from the job.

cimport cython
from urllib.parse import parse_qsl as _parse_qsl

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free
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
    cdef object _client
    cdef object _server
    cdef object _args
    cdef object _items
    cdef object _body             # bytes; None while a streaming route's body is unread
    cdef fl_job *_job             # while the handler runs, else NULL
    cdef bint _streaming          # the body comes from the job as it arrives
    cdef bint _continue_asked     # MSG_CONTINUE was posted
    cdef object _authority        # absolute-form: the target's authority (str); else None
    cdef dict _peers              # the handler thread's cache of peer addresses (peer_address)
    # Set before the handler runs by fastloop.proxy.FrontApp (trusted proxy headers,
    # --root-path); None: the connection's own value. client, scheme, host and root_path read them.
    cdef public object override_client
    cdef public object override_scheme
    cdef public object override_host
    cdef public object override_root_path
    # Set by a wrapper that wants to know how the answer went (fastloop._access): called on
    # the handler thread as on_answered(request, status, body_sent) once the whole answer has
    # been handed to the connection (see Responder.answer for what body_sent counts).
    cdef public object on_answered

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
        if not self._streaming:
            if self._body:
                yield self._body
            return
        while True:
            piece = self.read_body(size)
            if not piece:
                return
            yield piece

    cdef bytes read_body(self, size_t size):
        """At most size of the body bytes that have arrived (waiting for some), or b"" at its
        end."""
        cdef fl_job *j = self._job
        cdef char *data = NULL
        cdef size_t n = 0
        cdef int end = 0, gone = 0
        if j == NULL:
            raise ConnectionError("the request is over: its body can only be read by its handler")
        if not self._continue_asked:
            self._continue_asked = True
            if (j.reqs[0].req_flags & FL_REQ_EXPECT_CONTINUE) and not (j.reqs[0].req_flags & FL_REQ_HTTP10):
                fl_job_post(j, fl_msg_new(0, MSG_CONTINUE))  # now the handler wants the body
        # SAFETY: the job lives while this Request holds it (the loop appends under its lock),
        # and the buffer taken is ours alone.
        with nogil:
            fl_job_wait_body(j)
            data = fl_job_take_body_part(j, size, &n, &end, &gone)
        try:
            if n:
                return PyBytes_FromStringAndSize(data, n)
        finally:
            free(data)
        if end == 1:
            return b""
        if end < -1:
            raise BodyError(-end, fl_status_texts[fl_status_index(-end)].decode())
        raise ConnectionResetError("the client closed before sending the whole body")

    @property
    def client(self):
        """The client's (host, port), or its socket path ("" if unnamed) over a Unix socket.
        Read while the handler runs (then cached); None after, or if the client has gone.
        Behind a trusted proxy (--proxy-headers), the address the proxy reports instead."""
        if self.override_client is not None:
            return self.override_client
        if self._client is None:
            self._client = peer_address(self)
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
            self._server = socket_address(self._job, 0)
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


@cython.linetrace(False)  # holds a lock of handoff.pyx: see there
@cython.profile(False)
cdef object socket_address(fl_job *j, int peer):
    # Asked only when a handler reads it: no syscall per request otherwise. Under the job's
    # lock, so the loop cannot close the descriptor (and the number be reused) meanwhile.
    cdef char host[256]
    cdef int port = -1
    cdef int family = -1
    if j == NULL:
        return None
    with nogil:
        pthread_mutex_lock(&j.lock)
        if j.fd >= 0:
            family = fl_socket_address(j.fd, peer, host, sizeof(host), &port)
        pthread_mutex_unlock(&j.lock)
    if family < 0:
        return None
    text = host.decode("utf-8", "surrogateescape")
    return text if port < 0 else (text, port)


cdef enum:
    FL_PEERS_MAX = 4096     # peer addresses one handler thread keeps (then it starts afresh)


cdef object peer_address(Request r):
    """The client's address (socket_address), from the handler thread's cache when it has
    one: a keep-alive connection asks the kernel once, not once per request (WSGI's
    REMOTE_ADDR asks every time). Keyed by the loop's inbox and the connection's token, whose
    generation changes when its slot is reused, so an entry never names another connection."""
    cdef fl_job *j = r._job
    if j == NULL or r._peers is None:
        return socket_address(j, 1)
    key = (<size_t>j.inbox, j.token)
    found = r._peers.get(key)
    if found is None:
        found = socket_address(j, 1)
        if found is not None:
            if len(r._peers) >= FL_PEERS_MAX:
                r._peers.clear()  # (single dict operations: the cache is this thread's alone)
            r._peers[key] = found
    return found


cdef str decode_span(const char *p, fl_span s):
    return PyUnicode_DecodeLatin1(p + s.off, s.len, NULL)


cdef Request request_from_job(fl_job *j, int k):
    """The Request for j's k-th request, holding j until release_request()."""
    cdef Request r = Request.__new__(Request)
    cdef fl_jobreq *q = &j.reqs[k]
    cdef fl_request_line *line = &q.line
    cdef const char *p = j.req + q.off
    r._job = j
    r.method = "GET" if q.req_flags & FL_REQ_GET else decode_span(p, line.method)
    r.path = decode_span(p, line.path) if line.path.len else "/"
    r.query = decode_span(p, line.query) if line.query.len else ""
    r.minor = line.minor
    if line.authority.len:
        r._authority = decode_span(p, line.authority)
    r.keep_alive = (q.req_flags & FL_REQ_KEEP_ALIVE) != 0
    r._head = PyBytes_FromStringAndSize(p, q.head_len - 4)
    r._streaming = j.stream != 0
    if r._streaming:
        r._body = None
    else:
        # A job's bodies were buffered whole, so q.body_len <= FL_RBUF_MAX fits Py_ssize_t.
        r._body = PyBytes_FromStringAndSize(p + q.head_len, <Py_ssize_t>q.body_len) if q.body_len else b""
    return r


cdef void release_request(Request r) noexcept:
    """The handler is done: the Request no longer reaches the connection."""
    r._job = NULL


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
