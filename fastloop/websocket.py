"""WebSocket routes of a fastloop App: `@app.websocket(path)` and the WebSocket a handler gets.

    app = fastloop.App()

    @app.websocket("/echo")
    async def echo(ws):
        async for message in ws:          # str (text) or bytes (binary), until the peer closes
            await ws.send(message)

A WebSocket handler is a coroutine function: thousands of connections that mostly wait cost
one asyncio loop, not a thread each. The core does the protocol (the handshake, frames, UTF-8,
pings, permessage-deflate, the close handshake: core/ws_conn.pyx) and the handlers run on one
asyncio loop per server process (the one ASGI applications use, started when the App has
WebSocket routes), reached through the ASGI WebSocket interface (core/asgi_ws.pyx). So a
handler must not block: blocking work goes to `await asyncio.to_thread(...)`.

The WebSocket is accepted by `await ws.accept()` (to choose a subprotocol or add headers), or
by the first receive() or send(); a handler that returns without accepting refuses it (403).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple, Union

Message = Union[str, bytes]
WebSocketHandler = Callable[["WebSocket"], Awaitable[Any]]

__all__ = ["WebSocket", "WebSocketClosed", "routes_app"]


class WebSocketClosed(Exception):
    """receive() on a WebSocket the peer has closed (or that failed): its close code and
    reason (1006 when the connection ended without a close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class WebSocket:
    """One WebSocket connection, as its handler sees it."""

    def __init__(self, scope: dict, receive: Callable, send: Callable) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._accepted = False
        self._closed: Optional[WebSocketClosed] = None
        self.path: str = scope["path"]
        self.query_string: bytes = scope["query_string"]
        self.headers: List[Tuple[bytes, bytes]] = scope["headers"]
        self.client: Optional[Tuple[str, int]] = scope.get("client")
        self.subprotocols: List[str] = scope.get("subprotocols", [])
        self.subprotocol: Optional[str] = None
        self.path_params: Dict[str, Any] = {}  # the route's path parameters, converted

    def header(self, name: str) -> Optional[str]:
        """The first value of a request header field (case-insensitive), or None."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None

    @property
    def close_code(self) -> Optional[int]:
        """The close code once the WebSocket is closed, else None."""
        return None if self._closed is None else self._closed.code

    async def accept(self, subprotocol: Optional[str] = None,
                     headers: Iterable[Tuple[bytes, bytes]] = ()) -> None:
        """Completes the handshake (the 101), naming subprotocol (one of self.subprotocols)."""
        if self._accepted:
            return
        message = await self._receive()
        if message["type"] != "websocket.connect":  # the client left before the handshake
            self._closed = WebSocketClosed(message.get("code", 1006), message.get("reason", ""))
            raise self._closed
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol,
                          "headers": list(headers)})
        self._accepted = True
        self.subprotocol = subprotocol

    async def receive(self) -> Message:
        """The next message: str for text, bytes for binary. Raises WebSocketClosed once the
        peer has closed."""
        if not self._accepted:
            await self.accept()
        if self._closed is not None:
            raise self._closed
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._closed = WebSocketClosed(message.get("code", 1005), message.get("reason", ""))
            raise self._closed
        text = message.get("text")
        return text if text is not None else message["bytes"]

    async def send(self, message: Message) -> None:
        """Sends one message (str: text, bytes: binary); waits while the client is far behind.
        Raises OSError (fastloop.asgi.ClientDisconnected) once the connection is gone."""
        if not self._accepted:
            await self.accept()
        if isinstance(message, str):
            await self._send({"type": "websocket.send", "text": message})
        else:
            await self._send({"type": "websocket.send", "bytes": bytes(message)})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the WebSocket (before accepting: refuses it with 403)."""
        if self._closed is None:
            self._closed = WebSocketClosed(code, reason)
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while True:
            try:
                message = await self.receive()
            except WebSocketClosed:
                return
            yield message


Lookup = Callable[[str], Optional[Tuple[Callable[..., Awaitable[Any]], Dict[str, Any]]]]


def routes_app(lookup: Lookup) -> Callable:
    """The ASGI application that runs an App's WebSocket handlers: lookup(raw path) gives the
    handler and its path parameters (App._ws_lookup), or None: refused with 403."""

    async def websocket_routes(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "websocket":
            return
        raw = scope.get("raw_path")
        found = lookup(raw.decode("latin-1") if raw else scope["path"])
        if found is None:
            await send({"type": "websocket.close"})  # (a 403)
            return
        handler, params = found
        ws = WebSocket(scope, receive, send)
        ws.path_params = params
        await handler(ws, **params)

    return websocket_routes
