"""What the WebSocket tests share: ASGI apps, a server running one, the `websockets` library's
client set up for loopback, and a raw client that speaks frames byte by byte (for what a real
client never sends)."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import time
from typing import Any, Iterator, List, Optional, Tuple

from asgi_kit import Seen
from helpers import LOOPBACK, running_server
from websockets.sync.client import connect

import fastloop
from fastloop._core import WsParser, ws_frame
from fastloop.asgi import ASGIApp

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
MASK = b"\x11\x22\x33\x44"


@contextlib.contextmanager
def serve_ws(app: Any, app_kw: Optional[dict] = None, **kw: Any) -> Iterator["fastloop.Server"]:
    """A Server running ASGIApp(app, **app_kw) on a free loopback port."""
    kw.setdefault("timeouts", {"ws_ping": 0})
    asgi = ASGIApp(app, lifespan="off", name="tests:ws_app", **(app_kw or {}))
    with running_server(asgi, **kw) as server:
        yield server


def client(server: "fastloop.Server", path: str = "/ws", **kw: Any):
    """The websockets library's client, connected to server (no proxy, no client pings)."""
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return connect(f"ws://{LOOPBACK}:{server.port}{path}", proxy=None, **kw)


def make_echo(seen: Optional[Seen] = None):
    """An echo app; seen (if given) gets the scope, then the disconnect message."""
    async def echo(scope, receive, send):
        if scope["type"] != "websocket":
            return
        if seen is not None:
            seen.put(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                if seen is not None:
                    seen.put(message)
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    return echo


def upgrade_request(path: str = "/ws", version: bytes = b"13", extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
            b"\r\nSec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n")


class RawWs:
    """A WebSocket client over a plain socket: the handshake, then frames as given, and the
    server's frames parsed by the engine's client-side view."""

    def __init__(self, port: int, path: str = "/ws", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.sock.sendall(upgrade_request(path))
        self.head = b""
        while b"\r\n\r\n" not in self.head:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake: {self.head!r}"
            self.head += chunk
        self.head, rest = self.head.split(b"\r\n\r\n", 1)
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head
        self.parser = WsParser(max_size=1 << 26, from_server=True)
        self.events: List[tuple] = []
        if rest:
            self.events += self.parser.feed(rest)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                   mask: Optional[bytes] = MASK) -> None:
        self.sock.sendall(ws_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))

    def next_event(self, timeout: float = 5.0) -> tuple:
        """The server's next frame as an engine event, ("eof",) once it closed."""
        deadline = time.monotonic() + timeout
        while not self.events:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return ("eof",)
            self.events += self.parser.feed(chunk)
        return self.events.pop(0)

    def close_code(self, timeout: float = 5.0) -> Tuple[int, str]:
        """Reads until the server's close frame: (code, reason)."""
        while True:
            event = self.next_event(timeout)
            assert event[0] != "eof", "closed without a close frame"
            if event[0] == "close":
                return event[1], event[2]

    def wait_eof(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.next_event(deadline - time.monotonic())[0] == "eof":
                return
        raise AssertionError("the server did not close the connection")

    def close(self) -> None:
        self.sock.close()


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
