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

import sys
from typing import Any, Callable, Iterator

from ._core import WsgiAnswer, WsgiCall, WsgiLookup
from .app import App
from .routes import ANY_METHOD, NOT_FOUND, Match, RouteTable, found

__all__ = ["WSGIApp", "WSGIHandler", "FileWrapper"]


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


# start_response and write() for one request, and the Response from what they gathered:
# core/wsgi_fast.pyx (in C, as the environ: once per request, the adapter's hot path).
_Answer = WsgiAnswer


class WSGIHandler(WsgiCall):
    """A fastloop handler (request -> Response) that runs a WSGI application.

    script_name: the mount prefix, given to the app as SCRIPT_NAME and cut from PATH_INFO.
    multithread / multiprocess: wsgi.multithread and wsgi.multiprocess; True unless the caller
    knows better (fastloop.run and `fastloop serve` pass threads > 1 and workers > 1).
    url_scheme: wsgi.url_scheme ("https" behind a TLS-terminating proxy that is trusted).

    Calling it (core/wsgi_call.pyx, WsgiCall, in C: once per request, the adapter's hot path)
    builds the environ (environ(request) says what it holds), calls the application with an
    _Answer as start_response, and answers a list the application returns at once; finish()
    below takes any other result.
    """

    def __init__(self, app: Callable, script_name: str = "", multithread: bool = True,
                 multiprocess: bool = True, url_scheme: str = "http",
                 server_name: str = "localhost", server_port: int = 80) -> None:
        if not callable(app):
            raise TypeError(f"a WSGI application is callable, not {type(app).__name__}")
        self.app = app
        self.script_name = script_name.rstrip("/")
        # Every key that is the same for each request, copied once per request (through a
        # template: see WsgiCall; read-only from now on, assign a new dict to change it).
        self.base_environ = {
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

    def finish(self, answer: Any, result: Any) -> Any:
        """The Response for what the application returned when it is not a list (the call
        itself answers those): a file to send, a tuple, or any other iterable, closed (PEP
        3333) once the core is done with it."""
        streaming = False
        try:
            if type(result) is FileWrapper and _sendable(result.filelike):
                streaming = True  # the core sends the file with sendfile, then closes it
                return answer.response(rest=result.filelike)
            if type(result) is tuple:
                return answer.whole(result)
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

    def route_table(self) -> RouteTable:
        """App's table, with _lookup's decisions made in C (core/wsgi_call.pyx, WsgiLookup)
        unless a subclass decides them itself."""
        table = super().route_table()
        if type(self)._lookup is WSGIApp._lookup:
            table.lookup = WsgiLookup(App._lookup.__get__(self), self._match, NOT_FOUND,
                                      self._tables, self._patterns, self._mounts)
        return table

    def _lookup(self, request: Any) -> Match:
        # Wraps the App's lookup: the application answers whatever the routes and mounts do
        # not find (a route's 405 stays a 405). Only asked when the app has routes that could
        # take the path, so that most requests cost no Python call (WsgiLookup, in C, is
        # this method for the core: keep the two alike).
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
