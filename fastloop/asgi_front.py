"""What fastloop puts around an ASGI application when asked: trusted proxy headers, and the
observers of every answer (the access log, the request-duration histograms of --metrics), as
plain ASGI middleware, with the same rules, line format and observers as for fastloop Apps and
WSGI (fastloop/proxy.py, fastloop/_observe.py). Nothing is wrapped unless configured, so the
default path costs nothing."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

from ._observe import Observer
from .proxy import ProxyHeaders

__all__ = ["ProxyHeadersMiddleware", "ObserveMiddleware"]


def _text_headers(scope: dict) -> list:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope.get("headers", ())]


class ProxyHeadersMiddleware:
    """From a trusted peer only: X-Forwarded-For/-Proto/-Host and Forwarded set the scope's
    client, scheme and Host header. Lifespan scopes pass through."""

    def __init__(self, app: Callable, proxy: ProxyHeaders) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = tuple(client) if client else ""
            found, scheme, host = self.proxy.resolve(peer, _text_headers(scope))
            if found is not None or scheme is not None or host is not None:
                scope = dict(scope)
                if found is not None:
                    scope["client"] = tuple(found)
                if scheme is not None:
                    if scope["type"] == "websocket":
                        scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
                    scope["scheme"] = scheme
                if host is not None:
                    value = host.encode("latin-1")
                    scope["headers"] = [(n, value if n == b"host" else v)
                                        for n, v in scope["headers"]]
                    if not any(n == b"host" for n, _ in scope["headers"]):
                        scope["headers"].append((b"host", value))
        await self.app(scope, receive, send)


class _ScopeRequest:
    """What an access-log line reads of a request, from an ASGI scope."""

    def __init__(self, scope: dict) -> None:
        self.scope = scope
        self.method = scope.get("method", "GET")  # (a websocket scope's upgrade was a GET)
        self.path = scope["path"]
        self.query = scope["query_string"].decode("latin-1")
        self.version = "HTTP/" + scope["http_version"]
        client = scope.get("client")
        self.client = tuple(client) if client else None

    def header(self, name: str, default: Any = None) -> Any:
        key = name.lower().encode("latin-1")
        for n, v in self.scope["headers"]:
            if n == key:
                return v.decode("latin-1")
        return default


class ObserveMiddleware:
    """Each observer(request, status, sent, seconds) called once per HTTP request, when its
    answer is complete (or the application failed: then 500, as the client gets), with the
    body bytes sent and the time since the application was called."""

    def __init__(self, app: Callable, observers: Sequence[Observer],
                 active: Optional[Callable[[], bool]] = None) -> None:
        self.app = app
        self.observers = list(observers)
        self.active = active

    def _counters(self) -> dict:
        """What the observers count (the duration histograms), for Server.stats()."""
        out: dict = {}
        for observer in self.observers:
            counters = getattr(observer, "counters", None)
            if counters is not None:
                out.update(counters())
        return out

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.active is not None and not self.active():
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = _Observation(scope, self.observers)
        status: Optional[int] = None
        trailers = False  # the answer then ends with its last trailers message

        async def logged_send(message: dict) -> None:
            nonlocal status, trailers
            kind = message.get("type")
            if kind == "http.response.start":
                status = message.get("status")
                trailers = bool(message.get("trailers", False))
            await send(message)
            if kind == "http.response.body":
                if scope["method"] != "HEAD":
                    seen.sent += len(message.get("body", b""))
                if not message.get("more_body", False) and not trailers:
                    seen.report(status or 500)
            elif kind == "http.response.pathsend":
                seen.report(status or 500)
            elif kind == "http.response.trailers" and not message.get("more_trailers", False):
                seen.report(status or 500)

        try:
            await self.app(scope, receive, logged_send)
        except BaseException:
            seen.report(500 if status is None else status)
            raise
        seen.report(500 if status is None else status)

    async def _websocket(self, scope: dict, receive: Callable, send: Callable) -> None:
        """A WebSocket is observed once, when its handshake is decided, as the request it
        was: 101 once accepted (the time to accept as its duration), 403 when refused, the
        application's own status for a websocket.http.response, 500 when it failed first."""
        seen = _Observation(scope, self.observers)
        status: Optional[int] = None

        async def observed_send(message: dict) -> None:
            nonlocal status
            kind = message.get("type")
            if status is None:
                if kind == "websocket.accept":
                    status = 101
                    seen.report(status)
                elif kind == "websocket.close":
                    status = 403
                    seen.report(status)
                elif kind == "websocket.http.response.start":
                    status = message.get("status", 500)
            await send(message)
            if kind == "websocket.http.response.body":
                seen.sent += len(message.get("body", b""))
                if not message.get("more_body", False):
                    seen.report(status or 500)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            seen.report(500 if status is None else status)
            raise
        seen.report(403 if status is None else status)  # returned unaccepted: the core refuses it


class _Observation:
    """One request's report to the observers, made once (the first report wins): its body
    bytes sent so far, and the time since the application was called."""

    __slots__ = ("scope", "observers", "start", "sent", "done")

    def __init__(self, scope: dict, observers: Sequence[Observer]) -> None:
        self.scope = scope
        self.observers = observers
        self.start = time.perf_counter()
        self.sent = 0
        self.done = False

    def report(self, code: int) -> None:
        if self.done:
            return
        self.done = True
        request = _ScopeRequest(self.scope)
        seconds = time.perf_counter() - self.start
        for observer in self.observers:
            observer(request, code, self.sent, seconds)
