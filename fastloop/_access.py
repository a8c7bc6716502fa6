"""The access log: one gunicorn-style line per request.

    127.0.0.1 - - [29/Nov/2026:12:28:06 +0000] "GET /users/7?x=1 HTTP/1.1" 200 13 "-" "curl/8.5.0"

(client address, or "-" over a Unix socket; identity; user; time; request line; status; body
bytes; referer; user agent).

It works by wrapping an App: the wrapper's routes are the app's routes with each handler
wrapped, taken when the wrapper is built (so build it after the routes are registered).
With the log on, static routes are answered by their Python twin (App.static registers both),
so they are logged too: logging needs the GIL per request anyway.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ._core import Response
from .app import App

__all__ = ["AccessLogApp", "access_log"]

access_log = logging.getLogger("fastloop.access")

_NOT_FOUND = Response(b"Not Found", 404, content_type="text/plain")


def _size(result: Any) -> int:
    body = result.body if isinstance(result, Response) else result
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    try:
        return len(body)
    except TypeError:
        return 0


def _line(request: Any, status: Any, size: Any) -> None:
    target = request.path + ("?" + request.query if request.query else "")
    client = request.client
    access_log.info('%s - - [%s] "%s %s %s" %s %s "%s" "%s"',
                    client[0] if isinstance(client, tuple) else "-",
                    time.strftime("%d/%b/%Y:%H:%M:%S %z"), request.method, target,
                    request.version, status, size, request.header("referer", "-"),
                    request.header("user-agent", "-"))


def _logged(handler: Callable) -> Callable:
    def logged(request: Any) -> Any:
        try:
            result = handler(request)
        except Exception:
            _line(request, 500, "-")
            raise  # the core logs the traceback and answers 500
        _line(request, result.status if isinstance(result, Response) else 200, _size(result))
        return result

    return logged


class AccessLogApp(App):
    """app, with every request written to the "fastloop.access" logger at INFO (static
    routes, 404s and 405s included)."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self.inner = app
        self._statics = {}  # so C hands every request to Python, where it is logged
        self._stream_paths = app._stream_paths
        self._routes = {path: (_logged(handler), methods)
                        for path, (handler, methods) in app._routes.items()}

    def _resolve(self, request: Any) -> Optional[tuple]:
        entry = self.inner._resolve(request)
        if entry is None:
            return _logged(lambda request: _NOT_FOUND), ("GET", request.method)
        handler, methods = entry
        if request.method not in methods:
            _line(request, 405, "-")  # the core answers it, with Allow
            return entry
        return _logged(handler), methods
