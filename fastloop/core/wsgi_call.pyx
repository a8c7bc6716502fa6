# The per-request work of the WSGI adapter, in C, part two (part one, the environ and the
# checks of header names, is wsgi_fast.pyx): WsgiLookup sends a request to the application,
# WsgiCall calls it with the environ, and WsgiAnswer is start_response, write and the Response
# gathered from what the application returns. The rules are fastloop/wsgi.py's.

from http import HTTPStatus as _HTTPStatus
from types import MappingProxyType as _MappingProxy

from cpython.dict cimport PyDict_Copy
from cpython.list cimport PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.unicode cimport (PyUnicode_1BYTE_DATA, PyUnicode_1BYTE_KIND, PyUnicode_GET_LENGTH,
                              PyUnicode_KIND)


cdef extern from "Python.h":
    dict _PyDict_NewPresized(Py_ssize_t minused)


cdef tuple wsgi_status(str status):
    """The code and the reason to give Response for a checked WSGI status: None when it is
    the standard phrase, so the core writes its prebuilt status line."""
    found = _WSGI_STATUSES.get(status)
    if found is None:
        code = int(status[:3])
        reason = status[4:].strip() or None
        try:
            if reason == _HTTPStatus(code).phrase:
                reason = None
        except ValueError:
            pass
        found = (code, reason)
        if len(_WSGI_STATUSES) < WSGI_CACHE_MAX:
            _WSGI_STATUSES[status] = found
    return <tuple>found


cdef bint wsgi_status_ok(object status):
    """status is a str like "200 OK": three digits (as str.isdigit() has them) and a space."""
    cdef const unsigned char *p
    if type(status) is not str or PyUnicode_GET_LENGTH(status) < 4:
        return False
    if PyUnicode_KIND(status) == PyUnicode_1BYTE_KIND:
        p = PyUnicode_1BYTE_DATA(status)
        if 48 <= p[0] <= 57 and 48 <= p[1] <= 57 and 48 <= p[2] <= 57 and p[3] == 32:
            return True  # the usual case; any other takes the str methods' word
    return status[:3].isdigit() and status[3] == " "


def _wsgi_prepend(bytes first, rest):
    yield first
    yield from rest


cdef class WsgiAnswer:
    """start_response and write() for one request: the status, headers and body gathered.
    The object itself is the start_response callable the application gets (its method
    start_response is the same), so that no bound method is made per request.
    sent: the first body bytes exist (a streaming server would have sent the head), PEP
    3333's condition for start_response to re-raise exc_info."""

    cdef public object status
    cdef public list headers     # None until start_response
    cdef public bint sent
    cdef bytes first             # the body blocks: the first (most answers have one only)
    cdef list rest               # ... and the others, if any

    @property
    def chunks(self):
        """The body blocks gathered so far, in order (a new list)."""
        if self.first is None:
            return []
        return [self.first] + (self.rest or [])

    def __call__(self, status, headers, exc_info=None):
        return self.begin(status, headers, exc_info)

    def start_response(self, status, headers, exc_info=None):
        return self.begin(status, headers, exc_info)

    cdef object begin(self, status, headers, exc_info):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: avoid a frame <-> traceback cycle
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if not wsgi_status_ok(status):
            raise ValueError(f"a WSGI status is a str like '200 OK', not {status!r}")
        if type(headers) is not list:
            raise TypeError("WSGI response headers are a list of (name, value), "
                            f"not {type(headers).__name__}")
        for header in <list>headers:
            if type(header) is not tuple or len(<tuple>header) != 2 or \
                    type((<tuple>header)[0]) is not str or type((<tuple>header)[1]) is not str:
                raise TypeError(f"a WSGI response header is a tuple of two str, not {header!r}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data):
        self.add(data)

    cdef int add(self, data) except -1:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"WSGI body data is bytes, not {type(data).__name__}")
        if data:
            self.sent = True
            if self.first is None:
                self.first = data
            elif self.rest is None:
                self.rest = [data]
            else:
                self.rest.append(data)
        return 0

    def whole(self, result):
        """The Response for a list or tuple the application returned: every block exists
        already, so the answer has its length, and an error in it can still become a 500."""
        for chunk in result:
            if type(chunk) is not bytes:
                raise TypeError(f"a WSGI iterable yields bytes, not {type(chunk).__name__}")
            self.add(chunk)
        return self.respond(None)

    cdef object whole_list(self, list result):
        """whole() for a list, the usual answer."""
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(result)):
            chunk = result[i]
            if type(chunk) is not bytes:
                raise TypeError(f"a WSGI iterable yields bytes, not {type(chunk).__name__}")
            self.add(chunk)
        return self.respond(None)

    def declared_length(self):
        """The Content-Length the application set, or -1 (ASCII digits only: str.isdigit()
        also takes other scripts' digits). The first valid one counts."""
        cdef Py_ssize_t n
        for name, value in self.headers:
            if wsgi_header_role(name) == WSGI_CONTENT_LENGTH:
                n = wsgi_content_length(value)
                if n >= 0:
                    return n
        return -1

    def response(self, rest=None):
        """The Response for what was gathered; rest: the body still to come, streamed (an
        iterable of bytes, or a file object sent with sendfile)."""
        return self.respond(rest)

    cdef object respond(self, rest):
        cdef list headers = None
        cdef Py_ssize_t declared = -1
        cdef int role
        cdef Response r
        if self.status is None:
            raise AssertionError("the WSGI application returned without calling start_response")
        if self.rest is not None:
            body = b"".join(self.chunks)
        else:
            body = b"" if self.first is None else self.first
        content_type = ""  # none unless the application sets one
        for header in self.headers:
            if type(header) is tuple and PyTuple_GET_SIZE(header) == 2:
                name = (<tuple>header)[0]
                value = (<tuple>header)[1]
            else:  # changed by the application since start_response: as Python unpacks it
                name, value = header
            role = wsgi_header_role(name)
            if role == WSGI_CONTENT_TYPE:
                content_type = value
            elif role == WSGI_CONTENT_LENGTH:
                if declared < 0:
                    declared = wsgi_content_length(value)
            elif role == WSGI_KEEP:
                if headers is None:
                    headers = []
                headers.append((name, value))
        length = None
        if rest is not None:
            # Streamed: the core checks the total against a declared length and cuts the
            # connection rather than send more (PEP 3333) or less than it announced.
            body = rest if not body else _wsgi_prepend(body, rest)
            length = declared if declared >= 0 else None
        else:
            if 0 <= declared < len(body):
                body = body[:declared]  # PEP 3333: never send more than the declared length
            # An empty body with a declared length is a HEAD answer (Flask, Django): keep it.
            length = declared if declared > 0 and not body else None
        code, reason = wsgi_status(self.status)
        # Response(body, code, headers, content_type, reason, length), without parsing the
        # arguments of a Python call: the fields are this module's.
        r = Response.__new__(Response)
        r.body = body
        r.status = code
        r.headers = headers
        r.content_type = content_type
        r.reason = reason
        r.content_length = length
        return r


cdef class WsgiCall:
    """The handler the core calls for a request to a WSGI application (the base of
    fastloop/wsgi.py's WSGIHandler, which sets these fields and documents them): the environ,
    the call, and the Response of a list, the usual answer. Any other result goes to the
    subclass's finish(answer, result), in Python.

    base_environ: the keys every environ has, the same for each request. Read-only once set
    (a mapping proxy): it is copied, with a placeholder for each key a request sets, into the
    template each environ is copied from. Assign a new dict to change it."""

    cdef public object app
    cdef public str script_name
    cdef dict base
    cdef dict template

    @property
    def base_environ(self):
        return _MappingProxy(self.base)

    @base_environ.setter
    def base_environ(self, base):
        # Room for the keys of a browser's request too: PyDict_Copy keeps the table's size,
        # and an environ that outgrows it is resized on each request.
        cdef dict template = _PyDict_NewPresized(WSGI_ENVIRON_ROOM)
        template.update(base)
        for key in WSGI_SET_KEYS:
            template.setdefault(key, WSGI_UNSET)
        self.base = dict(base)
        self.template = template

    def environ(self, request):
        """The PEP 3333 environ for a fastloop Request: base_environ's keys, and PATH_INFO
        (percent-decoded, cut after the mount's SCRIPT_NAME and --root-path), REQUEST_METHOD,
        QUERY_STRING, SERVER_PROTOCOL, REMOTE_ADDR/PORT ("" over a Unix socket), wsgi.input
        over the complete body, CONTENT_TYPE, CONTENT_LENGTH (the body's), an HTTP_* key per
        header field (repeats joined with ",", Cookie with "; "; names with "_" left out, as
        nginx and gunicorn do, and Transfer-Encoding: the body is no longer chunked), the
        scheme and host of a trusted proxy, and SERVER_NAME/PORT from the host asked for, as
        gunicorn reads it."""
        return build_environ(request, self.template, self.script_name)

    def __call__(self, request):
        cdef WsgiAnswer answer = WsgiAnswer.__new__(WsgiAnswer)
        env = build_environ(request, self.template, self.script_name)
        result = self.app(env, answer)
        if type(result) is list:
            return answer.whole_list(<list>result)  # (a list has no close())
        return self.finish(answer, result)


cdef class WsgiLookup:
    """WSGIApp's lookup, as WSGIApp._lookup (fastloop/wsgi.py) decides: the App's routes when
    one could take the path, else the application. Holds the App's own tables (changed in
    place when routes are added), so routes stay live."""

    cdef object lookup      # App._lookup bound to the WSGIApp
    cdef object match       # the application's Match
    cdef object not_found   # routes.NOT_FOUND
    cdef dict tables
    cdef dict patterns
    cdef list mounts

    def __init__(self, lookup, match, not_found, dict tables, dict patterns, list mounts):
        self.lookup = lookup
        self.match = match
        self.not_found = not_found
        self.tables = tables
        self.patterns = patterns
        self.mounts = mounts

    def __call__(self, request):
        path = (<Request>request).path if type(request) is Request else request.path
        if self.patterns or self.mounts or (self.tables and path in self.tables):
            match = self.lookup(request)
            if match is not self.not_found:
                return match
        return self.match
