# The per-request work of the WSGI adapter (fastloop/wsgi.py), in C, part one: the environ
# built from what the core parsed (header keys, hosts, ports and the client's address cached,
# an empty wsgi.input shared), and the checks of an application's header names that the
# answer (wsgi_call.pyx: the lookup, the call, start_response / write / the Response) uses.
#
# fastloop/wsgi.py states the rules (what goes into the environ, what PEP 3333 asks of the
# answer) and keeps the parts that run once per application or stream; these files are the
# same rules without the interpreter's dispatch on every line: written in Python, building the
# environ and the Response cost more than the rest of a hello-world request together. Called
# on handler threads: the caches below are shared by them and used one dict operation at a
# time (no GIL needed), each bounded so a client's new names cannot grow them; the tables of
# known names are filled once, at import, and only read after.
#
# Header names and values an application gives are str: the checks below read a str's
# characters in place when it is stored one byte per character (latin-1, which every ASCII
# name is), and fall back to the str methods otherwise, so that both ways decide the same.

cimport cython
from io import BufferedIOBase as _BufferedIOBase, BytesIO as _BytesIO
from sys import intern as _intern
from urllib.parse import unquote_to_bytes as _unquote_to_bytes

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy, PyDict_DelItem, PyDict_GetItemWithError, PyDict_SetDefault
from cpython.object cimport PyObject
from cpython.unicode cimport (PyUnicode_1BYTE_DATA, PyUnicode_1BYTE_KIND, PyUnicode_DecodeLatin1,
                              PyUnicode_GET_LENGTH, PyUnicode_KIND)
from libc.string cimport memchr, memcmp, memcpy


cdef enum:
    WSGI_ENVIRON_ROOM = 40   # keys an environ template has room for (a 64-slot table)
    WSGI_CACHE_MAX = 512
    WSGI_KEY_MAX = 128     # longer header names get their environ key from Python's str ops

# A placeholder in an environ template (WsgiCall) for a key every request sets: a new key in
# a dict costs a probe to an empty slot and a new entry, a key already there only its value
# (about 80 instructions less each, measured). build_environ() replaces or removes every one:
# an application never sees it.
cdef object WSGI_UNSET = object()
cdef tuple WSGI_SET_KEYS = ("PATH_INFO", "REQUEST_METHOD", "QUERY_STRING", "SERVER_PROTOCOL",
                            "REMOTE_ADDR", "REMOTE_PORT", "wsgi.input", "HTTP_HOST")

cdef dict _WSGI_HOSTS = {}       # Host value -> (SERVER_NAME, SERVER_PORT or "" for the default)
cdef dict _WSGI_STATUSES = {}    # "200 OK" -> (200, None: the standard phrase, or the reason)
cdef dict _WSGI_PORTS = {}       # a client's port -> REMOTE_PORT, its decimal text

# RFC 9110 7.6.1 hop-by-hop fields, which PEP 3333 forbids applications to send, plus what the
# core writes itself (Content-Length from the body it sends, one Date, one Server).
cdef tuple WSGI_DROPPED_NAMES = (
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "content-length", "date", "server",
)
cdef frozenset WSGI_DROPPED = frozenset(WSGI_DROPPED_NAMES)

# What respond() does with an application's header field, by its name
cdef enum:
    WSGI_KEEP = 0          # sent as given
    WSGI_CONTENT_TYPE = 1  # becomes the Response's content_type
    WSGI_CONTENT_LENGTH = 2
    WSGI_DROP = 3          # one of WSGI_DROPPED (content-length aside)


cdef inline bint wsgi_name_is(const char *p, Py_ssize_t n, const char *lower, Py_ssize_t ln) noexcept:
    """p[:n], an ASCII token, equals lower ignoring case."""
    cdef Py_ssize_t i
    if n != ln:
        return False
    for i in range(n):
        if (p[i] | 0x20) != lower[i]:
            return False
    return True


cdef inline bint wsgi_latin1_is(const unsigned char *p, Py_ssize_t n, const char *lower,
                                Py_ssize_t ln) noexcept:
    """p[:n], any latin-1 text, is lower (ASCII, lower case) as str.lower() would compare it:
    letters in either case, every other character exactly. No latin-1 character but an ASCII
    capital lower-cases to ASCII, so this is exact."""
    cdef Py_ssize_t i
    cdef unsigned char c, l
    if n != ln:
        return False
    for i in range(n):
        c = p[i]
        l = <unsigned char>lower[i]
        if c != l and not (97 <= l <= 122 and c == l - 32):
            return False
    return True


cdef int wsgi_header_role(object name) except -1:
    """WSGI_* for an application's header name (a str after start_response's check, unless
    the application changed the list since: then str.lower() raises as it always did)."""
    cdef const unsigned char *p
    cdef Py_ssize_t n
    cdef str dropped
    if type(name) is not str or PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND:
        lower = name.lower()
        if lower == "content-type":
            return WSGI_CONTENT_TYPE
        if lower == "content-length":
            return WSGI_CONTENT_LENGTH
        return WSGI_DROP if lower in WSGI_DROPPED else WSGI_KEEP
    p = PyUnicode_1BYTE_DATA(name)
    n = PyUnicode_GET_LENGTH(name)
    # The spelling applications use is compared whole first: the loop is for other cases.
    if n == 12:
        if memcmp(p, b"Content-Type", 12) == 0 or wsgi_latin1_is(p, n, b"content-type", 12):
            return WSGI_CONTENT_TYPE
        return WSGI_KEEP
    if n == 14:
        if memcmp(p, b"Content-Length", 14) == 0 or wsgi_latin1_is(p, n, b"content-length", 14):
            return WSGI_CONTENT_LENGTH
        return WSGI_KEEP
    if n > 19:
        return WSGI_KEEP  # longer than any dropped name
    for dropped in WSGI_DROPPED_NAMES:
        # SAFETY: the names are ASCII str constants of this module, stored one byte each.
        if wsgi_latin1_is(p, n, <const char *>PyUnicode_1BYTE_DATA(dropped),
                          PyUnicode_GET_LENGTH(dropped)):
            return WSGI_DROP
    return WSGI_KEEP


cdef Py_ssize_t wsgi_content_length(object value) except -2:
    """A Content-Length value as respond() takes it: ASCII digits (str.isdigit() also takes
    other scripts' digits), at most 18 of them, between spaces and tabs; else -1."""
    cdef const unsigned char *p
    cdef Py_ssize_t i = 0, n, length = 0
    if type(value) is not str or PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND:
        text = value.strip(" \t")
        if text.isascii() and text.isdigit() and len(text) <= 18:
            return int(text)
        return -1
    p = PyUnicode_1BYTE_DATA(value)
    n = PyUnicode_GET_LENGTH(value)
    while i < n and (p[i] == 32 or p[i] == 9):
        i += 1
    while n > i and (p[n - 1] == 32 or p[n - 1] == 9):
        n -= 1
    if n == i or n - i > 18:
        return -1
    while i < n:
        if not 48 <= p[i] <= 57:
            return -1
        length = length * 10 + (p[i] - 48)
        i += 1
    return length


# Environ keys of the request header names most clients send, made once: a request's "Host"
# or "User-Agent" then costs no new key (and no hash of one) in its environ.
cdef tuple WSGI_KNOWN_NAMES = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
    b"cookie", b"referer", b"origin", b"cache-control", b"pragma", b"authorization",
    b"upgrade-insecure-requests", b"if-none-match", b"if-modified-since", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"x-request-id", b"dnt",
    b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-dest", b"sec-fetch-user", b"priority",
)
cdef tuple WSGI_KNOWN_KEYS = tuple(
    _intern("HTTP_" + name.decode().upper().replace("-", "_")) for name in WSGI_KNOWN_NAMES)


cdef object header_key(const char *p, Py_ssize_t n):
    """The environ key of header name p[:n] ("HTTP_X_Y" for "x-y"), or None for one left
    out: a name with "_" ("X_User" and "X-User" would both be HTTP_X_USER, and a proxy that
    checks one spelling could be bypassed with the other; nginx and gunicorn drop these)."""
    cdef char buf[5 + WSGI_KEY_MAX]
    cdef Py_ssize_t i
    cdef char ch
    cdef bytes known
    for i in range(len(WSGI_KNOWN_NAMES)):
        known = <bytes>WSGI_KNOWN_NAMES[i]
        if wsgi_name_is(p, n, PyBytes_AS_STRING(known), PyBytes_GET_SIZE(known)):
            return WSGI_KNOWN_KEYS[i]
    if memchr(p, 95, n) != NULL:  # "_"
        return None
    if n > WSGI_KEY_MAX:
        return "HTTP_" + PyUnicode_DecodeLatin1(p, n, NULL).upper().replace("-", "_")
    memcpy(buf, b"HTTP_", 5)
    for i in range(n):
        ch = p[i]
        if ch == 45:  # "-"
            ch = 95  # "_"
        elif 97 <= ch <= 122:  # a-z
            ch = ch - 32
        buf[5 + i] = ch
    return PyUnicode_DecodeLatin1(buf, n + 5, NULL)


cdef object headers_into(dict env, bytes head):
    """Adds head's header fields to env (PEP 3333 / CGI keys) and returns the first Host
    value, or None. The C parser validated every line: names are tokens, each line has a
    colon, and lines end with CRLF (the last one's is not in head)."""
    cdef const char *p = head
    cdef Py_ssize_t n = len(head)
    cdef const char *end = p + n
    cdef const char *line
    cdef const char *eol
    cdef const char *colon
    cdef const char *v
    cdef const char *ve
    cdef object host = None
    cdef object key
    cdef object old
    cdef PyObject *o
    eol = <const char *>memchr(p, 13, n)  # "\r"
    if eol == NULL:
        return None  # the request line alone
    line = eol + 2
    while line < end:
        eol = <const char *>memchr(line, 13, end - line)
        if eol == NULL:
            eol = end
        colon = <const char *>memchr(line, 58, eol - line)  # ":"
        if colon != NULL:
            v = colon + 1
            ve = eol
            while v < ve and (v[0] == 32 or v[0] == 9):  # SP, HTAB
                v += 1
            while ve > v and ((ve - 1)[0] == 32 or (ve - 1)[0] == 9):
                ve -= 1
            n = colon - line
            if wsgi_name_is(line, n, b"content-type", 12):
                env["CONTENT_TYPE"] = PyUnicode_DecodeLatin1(v, ve - v, NULL)
            elif wsgi_name_is(line, n, b"content-length", 14):
                if "CONTENT_LENGTH" not in env:  # the body's own wins
                    env["CONTENT_LENGTH"] = PyUnicode_DecodeLatin1(v, ve - v, NULL)
            elif wsgi_name_is(line, n, b"transfer-encoding", 17):
                pass  # the body the app reads is no longer chunked
            else:
                key = header_key(line, n)
                if key is not None:
                    value = PyUnicode_DecodeLatin1(v, ve - v, NULL)
                    if host is None and wsgi_name_is(line, n, b"host", 4):
                        host = value
                    # One dict operation for the usual first field of its name. SAFETY: o is
                    # borrowed from env, which this thread made and alone holds.
                    o = PyDict_SetDefault(env, key, value)
                    if o != <PyObject *>value:
                        old = <object>o
                        if old is WSGI_UNSET:
                            env[key] = value  # the template's placeholder
                        else:
                            # RFC 9110 5.3: repeated fields join with commas (Cookie with "; ").
                            env[key] = old + ("; " if key == "HTTP_COOKIE" else ",") + value
        line = eol + 2
    return host


cdef tuple server_name_port(str host):
    """As gunicorn reads it: the Host the client asked for names the server; "" for a port
    that is not there (or not digits): the scheme's default."""
    found = _WSGI_HOSTS.get(host)
    if found is None:
        if host.startswith("["):  # an IPv6 literal: [::1]:8000
            name, _, rest = host.partition("]")
            name += "]"
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = host.partition(":")
        found = (name, port if port.isdigit() else "")
        if len(_WSGI_HOSTS) < WSGI_CACHE_MAX:
            _WSGI_HOSTS[host] = found
    return <tuple>found


@cython.final
cdef class WsgiEmptyInput:
    """wsgi.input for a request without a body (most of them): a binary stream at its end.
    It holds no state, so one object serves every such request (a BytesIO per request cost
    as much as a tenth of the adapter's work): it reads as an empty BytesIO does (PEP 3333's
    read, readline, readlines and iteration, and io's reading side), and close() changes
    nothing, as there is nothing to release. Registered as an io.BufferedIOBase."""

    def read(self, size=-1):
        return b""

    def read1(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def readinto(self, buffer):
        return 0

    def readinto1(self, buffer):
        return 0

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def seek(self, offset, whence=0):
        if whence not in (0, 1, 2):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if whence == 0 and offset < 0:
            raise ValueError(f"negative seek value {offset}")
        return max(0, offset) if whence == 0 else 0

    def tell(self):
        return 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def writable(self):
        return False

    def isatty(self):
        return False

    def getvalue(self):
        return b""

    def close(self):
        pass

    @property
    def closed(self):
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


_BufferedIOBase.register(WsgiEmptyInput)
cdef WsgiEmptyInput WSGI_EMPTY_INPUT = WsgiEmptyInput()


@cython.final
cdef class WsgiPeer:
    """What a handler thread keeps of one connection for the environs of its requests, in
    its cache of peer addresses (Request._peers, see peer_address in request.pyx): the
    connection's REMOTE_ADDR and REMOTE_PORT, and the last host asked for with its
    SERVER_NAME and SERVER_PORT. That cache is the thread's alone, so are these fields."""
    cdef size_t inbox   # the connection's loop: tokens are only unique within one
    cdef str addr
    cdef str port
    cdef str host
    cdef tuple name_port


cdef WsgiPeer remote_into(dict env, Request request):
    """Sets REMOTE_ADDR and REMOTE_PORT from Request.client (a trusted proxy's, else the
    socket's peer). Returns the connection's WsgiPeer, or None when the address is not the
    socket's or there is no cache: a keep-alive connection's next request then costs one int
    lookup (its token: peer_address's keys are tuples), not a tuple key and a str of its port."""
    cdef fl_job *j = request._job
    cdef dict peers = request._peers
    cdef PyObject *o
    cdef WsgiPeer peer
    key = None
    client = request.override_client
    if client is None:
        client = request._client
        if client is None:
            if j != NULL and peers is not None:
                key = j.token
                o = PyDict_GetItemWithError(peers, key)
                if o != NULL and type(<object>o) is WsgiPeer:
                    peer = <WsgiPeer>o
                    if peer.inbox == <size_t>j.inbox:
                        env["REMOTE_ADDR"] = peer.addr
                        env["REMOTE_PORT"] = peer.port
                        return peer
            client = request._client = peer_address(request)
    if type(client) is not tuple:
        env["REMOTE_ADDR"] = ""  # a Unix socket's peer has none (as gunicorn and uvicorn say)
        if PyDict_GetItemWithError(env, "REMOTE_PORT") == <PyObject *>WSGI_UNSET:
            PyDict_DelItem(env, "REMOTE_PORT")  # the template's placeholder
        return None
    addr = (<tuple>client)[0]
    port = (<tuple>client)[1]
    text = _WSGI_PORTS.get(port)
    if text is None:
        text = str(port)
        if len(_WSGI_PORTS) < 65536:  # (at most one per port)
            _WSGI_PORTS[port] = text
    env["REMOTE_ADDR"] = addr
    env["REMOTE_PORT"] = text
    if key is None:
        return None
    peer = WsgiPeer.__new__(WsgiPeer)
    peer.inbox = <size_t>j.inbox
    peer.addr = addr
    peer.port = text
    if len(peers) >= FL_PEERS_MAX:
        peers.clear()  # (single dict operations: the cache is this thread's alone)
    peers[key] = peer
    return peer


cdef dict build_environ(Request request, dict base, str script_name):
    """wsgi_environ(), read from the Request's fields directly (this is its module). base may
    hold WSGI_UNSET for keys of WSGI_SET_KEYS (WsgiCall's template): none is left in the
    environ returned."""
    cdef dict env = PyDict_Copy(base)
    cdef str path = request.path
    cdef WsgiPeer peer
    if script_name:
        path = path[len(script_name):]
    root = request.override_root_path
    if root:  # --root-path: in front of the mount's own prefix; cut from PATH_INFO if there
        env["SCRIPT_NAME"] = root + script_name
        if path == root or path.startswith(root + "/"):
            path = path[len(root):]
    # PEP 3333: PATH_INFO is the percent-decoded path, its bytes carried as latin-1 str.
    env["PATH_INFO"] = _unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    env["REQUEST_METHOD"] = request.method
    env["QUERY_STRING"] = request.query
    env["SERVER_PROTOCOL"] = "HTTP/1.1" if request.minor else "HTTP/1.0"
    peer = remote_into(env, request)
    body = request._body
    if body is None:  # a streaming route's: Request.body reads the rest
        body = request.body
    if body:
        env["wsgi.input"] = _BytesIO(body)
        # The body is complete, chunked or not: tell its length to apps that rely on it.
        env["CONTENT_LENGTH"] = str(len(body))
    else:
        env["wsgi.input"] = WSGI_EMPTY_INPUT
    host = header_host = headers_into(env, request._head)
    if request.override_scheme is not None:  # from a trusted proxy (fastloop.proxy)
        env["wsgi.url_scheme"] = request.override_scheme
    # A trusted proxy's host, else the authority of an absolute-form target, which wins over
    # the Host header (RFC 9112 3.2.2), else the Host header: Request.host's order.
    if request.override_host is not None:
        host = request.override_host
    elif request._authority is not None:
        host = request._authority
    if host is not None:
        if host is not header_host:  # (the parser takes one Host field at most: set already)
            env["HTTP_HOST"] = host
    elif PyDict_GetItemWithError(env, "HTTP_HOST") == <PyObject *>WSGI_UNSET:
        PyDict_DelItem(env, "HTTP_HOST")  # the template's placeholder (HTTP/1.0, no Host)
    if host:
        if peer is not None and peer.host is not None and peer.host == host:
            name_port = peer.name_port  # the connection asks for the same host again
        else:
            name_port = server_name_port(host)
            if peer is not None:
                peer.host = host
                peer.name_port = name_port
        name, port = name_port
        env["SERVER_NAME"] = name
        env["SERVER_PORT"] = port or ("443" if env["wsgi.url_scheme"] == "https" else "80")
    return env


def wsgi_environ(Request request, dict base, str script_name):
    """The PEP 3333 environ of request: a copy of base (the keys that never change) and the
    request's own (fastloop/wsgi.py WSGIHandler.environ documents them)."""
    return build_environ(request, base, script_name)
