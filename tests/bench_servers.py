"""Servers that answer `fastloop bench` with fixed bytes, to check its response parser and its
books where a fastloop server cannot misbehave on purpose. Each is a plain blocking socket
server on loopback, one thread per connection, stopped (and joined) by its context manager."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator, List

from helpers import LOOPBACK

__all__ = ["CannedServer", "canned", "closing_unread"]


class CannedServer:
    """A plain blocking socket server, one thread per connection: answers each request head
    with `response` (closing after it when close=True) and records each client's address."""

    def __init__(self, response: bytes, close: bool = False, host: str = LOOPBACK) -> None:
        self.response = response
        self.close = close
        self.peers: List[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._threads: List[threading.Thread] = []
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            self.peers.append(addr[0])
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        buf = b""
        with conn:
            try:
                while not self._stop:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    while b"\r\n\r\n" in buf:
                        _, buf = buf.split(b"\r\n\r\n", 1)
                        conn.sendall(self.response)
                        if self.close:
                            return
            except OSError:
                return

    def stop(self) -> None:
        self._stop = True
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        self.sock.close()


@contextlib.contextmanager
def canned(response: bytes, close: bool = False) -> Iterator[CannedServer]:
    server = CannedServer(response, close)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def closing_unread(delay: float = 0.05) -> Iterator[int]:
    """A listener that accepts each connection, reads nothing, and closes it after `delay`
    seconds: closing with unread bytes resets the connection, so a client that is still
    writing a large request never gets to send it whole. Yields the port."""
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    sock.listen(64)
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            time.sleep(delay)
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        sock.close()
