"""The access log: one line per request on the "fastloop.access" logger, at INFO.

    127.0.0.1 - - [29/Nov/2026:12:28:06 +0000] "GET /users/7?x=1 HTTP/1.1" 200 13 "-" "curl/8.5.0"

The line's layout is gunicorn's --access-logformat (fastloop/_accessformat.py: the atoms and
the default above), or one JSON object per line.

It works by wrapping an App: every request is routed through the wrapper's _resolve to the
app's routes, with the handler wrapped.
A wrapped handler sets Request.on_answered, which the handler thread calls once the answer
has been handed to the connection: so the line carries the status really answered (a
handler that raised is a 500), the body bytes really posted (a streamed body's pieces, a
file's count; see core/handler.pyx Responder.sent) and the time at completion.
With the log on, static routes are answered by their Python twin (App.static registers both),
so they are logged too: logging needs the GIL per request anyway.
Requests the core itself rejects (400, 408, 413, ...) never reach Python and are not logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ._accessformat import DEFAULT_FORMAT, Entry, check_format, format_line, json_line
from ._core import Response
from .app import App

__all__ = ["AccessLogApp", "access_log"]

access_log = logging.getLogger("fastloop.access")

_NOT_FOUND = Response(b"Not Found", 404, content_type="text/plain")


class AccessLogApp(App):
    """app, with every request written to the "fastloop.access" logger at INFO (static
    routes, 404s and 405s included), formatted by fmt (gunicorn atoms) or, with as_json, as
    one JSON object per line."""

    def __init__(self, app: App, fmt: str = DEFAULT_FORMAT, as_json: bool = False) -> None:
        super().__init__()
        check_format(fmt)
        self.inner = app
        self.fmt = fmt
        self.as_json = as_json
        self._statics = {}  # so C hands every request to Python, where it is logged
        self._stream_paths = app._stream_paths
        # No exact routes of its own: the core would answer a wrong method on one 405 without
        # calling anything here, so every request comes through _resolve (one call more).
        self._routes = {}

    def _watch(self, request: Any) -> None:
        """Asks the handler thread to report request's answer once it is handed over."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        start = time.perf_counter()

        def answered(request: Any, status: int, sent: int) -> None:
            entry = Entry(request, status, sent, time.perf_counter() - start, time.time())
            access_log.info("%s", json_line(entry) if self.as_json
                            else format_line(self.fmt, entry))

        request.on_answered = answered

    def _logged(self, handler: Callable) -> Callable:
        def logged(request: Any) -> Any:
            self._watch(request)
            return handler(request)  # a handler that raises is answered 500, and logged so

        return logged

    def _resolve(self, request: Any) -> Optional[tuple]:
        entry = self.inner._routes.get(request.path) or self.inner._resolve(request)
        if entry is None:
            return self._logged(lambda request: _NOT_FOUND), ("GET", request.method)
        handler, methods = entry
        if request.method not in methods:
            self._watch(request)  # the core answers it 405, with Allow
            return entry
        return self._logged(handler), methods
