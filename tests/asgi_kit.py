"""What the ASGI server tests share: a server running a raw ASGI app in this process, a client
connection that reads answers with the strict reader (wire.py), and a way for an app on the
asyncio thread to tell the test what it saw."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import time
from typing import Any, Iterator, List, Optional, Tuple

from helpers import LOOPBACK, running_server
from wire import Answer, Malformed, read_answer

import fastloop
from fastloop.asgi import ASGIApp

__all__ = ["serve_asgi", "Client", "Seen", "rss_kib", "not_lifespan"]


@contextlib.contextmanager
def serve_asgi(app: Any, lifespan: str = "off", root_path: str = "", stop_timeout: float = 5.0,
               **kw: Any) -> Iterator["fastloop.Server"]:
    """A Server running ASGIApp(app) on a free loopback port, stopped on the way out."""
    asgi = ASGIApp(app, lifespan=lifespan, root_path=root_path, name="tests:asgi_app")
    with running_server(asgi, stop_timeout=stop_timeout, **kw) as server:
        yield server


def not_lifespan(scope: dict) -> bool:
    """True for an http scope (what an app under lifespan "auto" answers)."""
    return scope["type"] == "http"


class Seen:
    """A thread-safe mailbox: the app (on the asyncio thread) puts what it saw, the test
    gets it with a timeout, so a missing event fails the test instead of hanging it."""

    def __init__(self) -> None:
        self.q: "queue.Queue[Any]" = queue.Queue()

    def put(self, item: Any) -> None:
        self.q.put(item)

    def get(self, timeout: float = 5.0) -> Any:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the app reported nothing within {timeout}s") from None

    def empty(self) -> bool:
        return self.q.empty()


class Client:
    """One connection to the server; answers read strictly, one at a time."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.timeout = timeout
        self.data = b""
        self.closed = False

    def send(self, data: bytes) -> "Client":
        self.sock.sendall(data)
        return self

    def recv_some(self, timeout: Optional[float] = None) -> bytes:
        """The next bytes the server sends (b"" once it closed); raises socket.timeout."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(262144)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
        return chunk

    def read_until(self, marker: bytes, timeout: Optional[float] = None) -> bytes:
        """Reads until marker is in the bytes received (kept for answer()); returns them."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while marker not in self.data:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"{marker!r} never came: {self.data[:300]!r}")
            self.data += self.recv_some(left)
        return self.data

    def answer(self, head: bool = False, timeout: Optional[float] = None) -> Answer:
        """The next complete answer (a close-delimited one needs the close); raises
        wire.Truncated if the connection closes inside it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            got = read_answer(self.data, head_request=head, eof=self.closed)
            if got is not None:
                answer, self.data = got
                return answer
            if self.closed:
                raise Malformed(f"closed with no answer: {self.data[:300]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no complete answer within the timeout: {self.data[:300]!r}")
            self.data += self.recv_some(left)

    def wait_closed(self, timeout: float = 5.0) -> bytes:
        """Reads to the close; returns everything received and not yet read as answers."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the server did not close: {self.data[:300]!r}")
            self.data += self.recv_some(left)
        return self.data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rss_kib() -> int:
    """This process's resident set (VmRSS, KiB; Linux)."""
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def get(path: str = "/", extra: bytes = b"", version: bytes = b"1.1", method: bytes = b"GET") -> bytes:
    """A request head (with Host) for path."""
    return method + b" " + path.encode("latin-1") + b" HTTP/" + version + b"\r\nHost: t\r\n" + extra + b"\r\n"


def pairs(answer: Answer) -> List[Tuple[str, bytes]]:
    return list(answer.headers)
