"""WSGI (PEP 3333): run any WSGI application on fastloop.

    from fastloop.wsgi import WSGIApp
    app = WSGIApp(flask_app)          # every path goes to flask_app
    fastloop.run(app, port=8000)      # or: fastloop serve module:flask_app

or mount one under a prefix of a fastloop App: `app.mount_wsgi("/legacy", flask_app)`.

Theory of operation. The core hands over a request whose body is complete (Content-Length or
de-chunked), so `wsgi.input` is an in-memory stream over it and `wsgi.input_terminated` is
true. The application's output is gathered and answered as one fastloop.Response: start_response
records the status and headers, write() and the iterable add body bytes, close() is always
called. "Headers sent" (PEP 3333's condition for re-raising exc_info) means the first non-empty
body bytes were produced, as it would on a streaming server, so an application behaves the same
when fastloop streams. Hop-by-hop headers are dropped, and Content-Length, Date and Server come
from the core.
"""

from __future__ import annotations

import io
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from ._core import Response
from .app import App
from .routes import ANY_METHOD, NOT_FOUND, Match, found

__all__ = ["WSGIApp", "WSGIHandler", "FileWrapper"]

# RFC 9110 7.6.1 hop-by-hop fields, which PEP 3333 forbids applications to send, plus what the
# core writes itself (Content-Length from the body it sends, one Date, one Server).
_DROPPED_HEADERS = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "content-length", "date", "server",
))


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks and closes it with close().
    The adapter reads a whole FileWrapper in one call."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _sendable(filelike: Any) -> bool:
    """A real file (sendfile needs its descriptor), opened for binary reading."""
    try:
        filelike.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return hasattr(filelike, "seek") and hasattr(filelike, "tell") and "b" in getattr(filelike, "mode", "b")


def _pieces(chunks: Iterator[Any], result: Any) -> Iterator[bytes]:
    """The rest of a WSGI iterable, checked, and closed (PEP 3333) when the core is done."""
    try:
        for chunk in chunks:
            if type(chunk) is not bytes:
                raise TypeError(f"a WSGI iterable yields bytes, not {type(chunk).__name__}")
            yield chunk
    finally:
        _close(result)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class _Answer:
    """start_response and write() for one request: the status, headers and body gathered."""

    __slots__ = ("status", "headers", "chunks", "sent")

    def __init__(self) -> None:
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.chunks: List[bytes] = []
        self.sent = False   # the first body bytes exist: a streaming server would have sent the head

    def start_response(self, status: str, headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: avoid a frame <-> traceback cycle
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str or len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"a WSGI status is a str like '200 OK', not {status!r}")
        if type(headers) is not list:
            raise TypeError("WSGI response headers are a list of (name, value), "
                            f"not {type(headers).__name__}")
        for header in headers:
            if type(header) is not tuple or len(header) != 2 or \
                    type(header[0]) is not str or type(header[1]) is not str:
                raise TypeError(f"a WSGI response header is a tuple of two str, not {header!r}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"WSGI body data is bytes, not {type(data).__name__}")
        if data:
            self.sent = True
            self.chunks.append(data)

    def declared_length(self) -> int:
        """The Content-Length the application set, or -1 (ASCII digits only: str.isdigit()
        also takes other scripts' digits)."""
        for name, value in self.headers:
            if name.lower() == "content-length":
                text = value.strip(" \t")
                if text.isascii() and text.isdigit() and len(text) <= 18:
                    return int(text)
        return -1

    def response(self, rest: Any = None) -> Response:
        """The Response for what was gathered; rest: the body still to come, streamed (an
        iterable of bytes, or a file object sent with sendfile)."""
        if self.status is None:
            raise AssertionError("the WSGI application returned without calling start_response")
        body: Any = b"".join(self.chunks)
        content_type = ""  # none unless the application sets one
        headers = []
        declared = self.declared_length()
        for name, value in self.headers:
            lower = name.lower()
            if lower == "content-type":
                content_type = value
            elif lower not in _DROPPED_HEADERS:
                headers.append((name, value))
        length: Optional[int] = None
        if rest is not None:
            # Streamed: the core checks the total against a declared length and cuts the
            # connection rather than send more (PEP 3333) or less than it announced.
            body = rest if not body else _prepend(body, rest)
            length = declared if declared >= 0 else None
        else:
            if 0 <= declared < len(body):
                body = body[:declared]  # PEP 3333: never send more than the declared length
            # An empty body with a declared length is a HEAD answer (Flask, Django): keep it.
            length = declared if declared > 0 and not body else None
        reason = self.status[4:].strip() or None
        return Response(body, int(self.status[:3]), headers, content_type, reason=reason,
                        content_length=length)


class WSGIHandler:
    """A fastloop handler (request -> Response) that runs a WSGI application.

    script_name: the mount prefix, given to the app as SCRIPT_NAME and cut from PATH_INFO.
    multithread / multiprocess: wsgi.multithread and wsgi.multiprocess; True unless the caller
    knows better (fastloop.run and `fastloop serve` pass threads > 1 and workers > 1).
    url_scheme: wsgi.url_scheme ("https" behind a TLS-terminating proxy that is trusted).
    """

    def __init__(self, app: Callable, script_name: str = "", multithread: bool = True,
                 multiprocess: bool = True, url_scheme: str = "http",
                 server_name: str = "localhost", server_port: int = 80) -> None:
        if not callable(app):
            raise TypeError(f"a WSGI application is callable, not {type(app).__name__}")
        self.app = app
        self.script_name = script_name.rstrip("/")
        # Every key that is the same for each request, copied once per request.
        self.base_environ: Dict[str, Any] = {
            "SCRIPT_NAME": self.script_name,
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(server_port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    def environ(self, request: Any) -> dict:
        """The PEP 3333 environ for a fastloop Request."""
        env = self.base_environ.copy()
        path = request.path
        if self.script_name:
            path = path[len(self.script_name):]
        root = request.root_path
        if root:  # --root-path: in front of the mount's own prefix; cut from PATH_INFO if there
            env["SCRIPT_NAME"] = root + self.script_name
            if path == root or path.startswith(root + "/"):
                path = path[len(root):]
        # PEP 3333: PATH_INFO is the percent-decoded path, its bytes carried as latin-1 str.
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        env["REQUEST_METHOD"] = request.method
        env["QUERY_STRING"] = request.query
        env["SERVER_PROTOCOL"] = request.version
        client = request.client
        if isinstance(client, tuple):  # a TCP peer
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = client[0], str(client[1])
        else:  # a Unix socket peer has no address (as gunicorn and uvicorn give it)
            env["REMOTE_ADDR"] = ""
        body = request.body
        env["wsgi.input"] = io.BytesIO(body)
        if body:
            # The body is complete, chunked or not: tell its length to apps that rely on it.
            env["CONTENT_LENGTH"] = str(len(body))
        for name, value in request.headers:
            if name == "content-type":
                env["CONTENT_TYPE"] = value
            elif name == "content-length":
                env.setdefault("CONTENT_LENGTH", value)
            elif name == "transfer-encoding":
                continue  # the body the app reads is no longer chunked
            elif "_" in name:
                # "X_User" and "X-User" would both become HTTP_X_USER: a proxy that checks one
                # spelling could be bypassed with the other (nginx and gunicorn drop these too).
                continue
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
                if key in env:
                    # RFC 9110 5.3: repeated fields join with commas (Cookie with "; ").
                    env[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
                else:
                    env[key] = value
        if request.override_scheme is not None:  # from a trusted proxy (fastloop.proxy)
            env["wsgi.url_scheme"] = request.override_scheme
        # A trusted proxy's host, else the authority of an absolute-form target, which wins
        # over the Host header (RFC 9112 3.2.2), else the Host header.
        host = request.host
        if host is not None:
            env["HTTP_HOST"] = host
        if host:
            # As gunicorn reads it: the Host the client asked for names the server; without a
            # port there, the scheme's default port.
            if host.startswith("["):  # an IPv6 literal: [::1]:8000
                name, _, rest = host.partition("]")
                name += "]"
                port = rest[1:] if rest.startswith(":") else ""
            else:
                name, _, port = host.partition(":")
            env["SERVER_NAME"] = name
            env["SERVER_PORT"] = port if port.isdigit() else \
                "443" if env["wsgi.url_scheme"] == "https" else "80"
        return env

    def __call__(self, request: Any) -> Response:
        answer = _Answer()
        result = self.app(self.environ(request), answer.start_response)
        streaming = False
        try:
            if type(result) is FileWrapper and _sendable(result.filelike):
                streaming = True  # the core sends the file with sendfile, then closes it
                return answer.response(rest=result.filelike)
            if type(result) in (list, tuple):
                # Every block exists already: one answer with its length, and an error in it
                # can still become a 500.
                for chunk in result:
                    if type(chunk) is not bytes:
                        raise TypeError(f"a WSGI iterable yields bytes, not {type(chunk).__name__}")
                    answer.write(chunk)
                return answer.response()
            # Any other iterable may take its time between blocks, and PEP 3333 forbids holding
            # a block back: each goes out as it is yielded. The first one is awaited here (it
            # is when start_response has run); when it is the whole declared length, or the
            # iterable ends at once, the answer goes out whole, as a list's would.
            chunks = iter(result)
            for chunk in chunks:
                if type(chunk) is not bytes:
                    raise TypeError(f"a WSGI iterable yields bytes, not {type(chunk).__name__}")
                if chunk:
                    answer.write(chunk)
                    break
            else:
                return answer.response()
            if 0 <= answer.declared_length() <= len(answer.chunks[0]):
                return answer.response()  # the declared length is all there: the rest is dropped
            streaming = True
            return answer.response(rest=_pieces(chunks, result))
        finally:
            if not streaming:
                _close(result)


class WSGIApp(App):
    """A fastloop App that sends every request to one WSGI application. Routes added to it
    (app.static("/health", "ok"), @app.get(...)) are answered first, by fastloop itself."""

    def __init__(self, wsgi_app: Callable, **options: Any) -> None:
        super().__init__()
        self.wsgi = WSGIHandler(wsgi_app, **options)
        self._match = found(self.wsgi, ANY_METHOD)

    def _lookup(self, request: Any) -> Match:
        # Wraps the App's lookup: the application answers whatever the routes and mounts do
        # not find (a route's 405 stays a 405). Only asked when the app has routes that could
        # take the path, so that most requests cost one Python call here, as before the table.
        if self._patterns or self._mounts or request.path in self._tables:
            match = App._lookup(self, request)
            if match is not NOT_FOUND:
                return match
        return self._match


def is_wsgi_app(obj: Any) -> bool:
    """True if obj looks like a WSGI application rather than a fastloop App (or ASGI app)."""
    import inspect

    if isinstance(obj, App) or not callable(obj):
        return False
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else getattr(obj, "__call__", None)
    return not inspect.iscoroutinefunction(call)
