"""Watching every answer a Python handler gives: the access log and the request-duration
histograms (--access-log, --metrics) are observers of one wrapper around the App.

ObservedApp compiles to the inner app's route table with every handler wrapped
(RouteTable.wrapped: the 404 and 405 answers are handlers too). The wrapped handler notes the
time and sets Request.on_answered, which the handler thread calls once the answer has been
handed to the connection (core/handler.pyx, Responder.answer): so each observer gets the
status really answered (a handler that raised is a 500), the body bytes really posted (a
streamed body's pieces, a file's count) and the duration from the handler's call to that
moment. One hook and one clock reading per request serve every observer.

Requests the core answers without Python never reach an observer's call: static routes
(unless the wrapper takes them over, as the access log does, to log them too) and the
requests the core rejects (400, 408, 413, 414, 431, 501, 505). The core reports the latter
after its loop turn, with the client and the request line as far as it was read, through
the table's on_rejected (core/notes.pyx, note_rejected), to the observers that have a
`rejected` method (the access log).
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, Sequence

from .app import App
from .routes import RouteTable

__all__ = ["ObservedApp", "Observer"]

# observer(request, status, sent, seconds): called on the handler thread, once per answer.
Observer = Callable[[Any, int, int, float], None]


class ObservedApp(App):
    """app, with each observer called for every request a Python handler answers (404s and
    405s included). With take_statics, static routes are answered by their Python twin (App
    static registers both), so they are observed too, at the cost of the GIL per request.
    active(), when given, is asked per request: when it says no, nothing is watched."""

    def __init__(self, app: App, observers: Sequence[Observer], take_statics: bool = False,
                 active: Optional[Callable[[], bool]] = None) -> None:
        super().__init__()
        self.inner = app
        self.observers: List[Observer] = list(observers)
        self._active = active
        self.take_statics = take_statics

    def route_table(self) -> RouteTable:
        """The inner app's table, every handler watched; with take_statics, no static route
        is left to C. Compiled when the server starts: see RouteTable.wrapped for what is
        copied then."""
        table = self.inner.route_table().wrapped(self._watched, statics=not self.take_statics,
                                                 on_rejected=self._on_rejected)
        return table.replace(websocket_wrap=self._watched_websockets(table.websocket_wrap))

    def _watched_websockets(self, inner_wrap: Optional[Callable[[Any], Any]]) -> Callable[[Any], Any]:
        """Wraps the ASGI application of the WebSocket routes so that each handshake is
        observed too (101, or the refusal), as for ASGI applications."""
        from .asgi_front import ObserveMiddleware  # (asgi_front imports this module)

        def wrap(app: Any) -> Any:
            if inner_wrap is not None:
                app = inner_wrap(app)
            return ObserveMiddleware(app, self.observers, active=self._active)
        return wrap

    def _on_rejected(self, status: int, client: Any, line: str, sent: int) -> None:
        """Called by an event loop (with the GIL, after its turn) for each request the core
        answered with an error status itself; client as Request.client, line the request
        line as far as it was read (latin-1, at most 256 characters), sent the body bytes of
        the error answer."""
        for observer in self.observers:
            rejected = getattr(observer, "rejected", None)
            if rejected is not None:
                rejected(status, client, line, sent)

    def _counters(self) -> dict:
        """What the inner app and the observers count (Server.stats() merges it)."""
        out = dict(getattr(self.inner, "_counters", dict)())
        for observer in self.observers:
            counters = getattr(observer, "counters", None)
            if counters is not None:
                out.update(counters())
        return out

    def _watch(self, request: Any) -> None:
        """Asks the handler thread to report request's answer once it is handed over."""
        if self._active is not None and not self._active():
            return
        start = time.perf_counter()
        observers = self.observers

        def answered(request: Any, status: int, sent: int) -> None:
            seconds = time.perf_counter() - start
            for observer in observers:
                observer(request, status, sent, seconds)

        request.on_answered = answered

    def _watched(self, handler: Callable) -> Callable:
        watch = self._watch

        def watched(request: Any, **params: Any) -> Any:
            watch(request)
            return handler(request, **params)  # a handler that raises is answered 500, and observed so

        return watched
