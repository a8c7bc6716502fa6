"""Shared test helpers: a started fastloop server, raw requests, descriptor listings and a
deliberately naive edge-triggered reference server.

Everything here is bounded: each helper takes or has a timeout, and each thread or socket it
creates is ended by the helper that made it (or by the caller's `with` block).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional

import pytest

import fastloop

__all__ = [
    "LOOPBACK",
    "OK_RESPONSE",
    "running_server",
    "raw_request",
    "open_fds",
    "wait_until",
    "NaiveETServer",
    "FREE_THREADED",
    "free_threaded_only",
]

LOOPBACK = "127.0.0.1"

# A free-threaded CPython (3.13t, 3.14t) that runs without the GIL: handler threads then run
# Python in parallel. sys._is_gil_enabled exists from 3.13 on; older ones always have the GIL.
FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()
# Marks a test that means something only without the GIL (it skips everywhere else).
free_threaded_only = pytest.mark.skipif(not FREE_THREADED,
                                        reason="needs a free-threaded CPython with the GIL off")

# What NaiveETServer answers to every request; fastloop tests serve the same body from a static
# route, so one client-side check fits both servers.
OK_BODY = b"Hello"
OK_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
               b"Connection: close\r\n\r\n" + OK_BODY)


@contextlib.contextmanager
def running_server(app: "fastloop.App", stop_timeout: float = 5.0, **kw) -> Iterator["fastloop.Server"]:
    """Starts fastloop.Server(app, **kw) on a free loopback port, yields it, and stops it on
    the way out, whatever happened inside the block. host defaults to 127.0.0.1, port to 0."""
    kw.setdefault("host", LOOPBACK)
    kw.setdefault("port", 0)
    server = fastloop.Server(app, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=stop_timeout)


def raw_request(port: int, data: bytes, timeout: float = 5.0, host: str = LOOPBACK,
                shut_write: bool = False) -> bytes:
    """Connects, sends data, and returns every byte received until the server closes the
    connection or `timeout` seconds (in total, not per read) have passed, whichever is first.

    shut_write=True half-closes the connection after sending (the server then sees EOF).
    A reset by the server ends the read like a close does: the bytes received so far are
    returned.
    """
    deadline = time.monotonic() + timeout
    chunks: List[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def open_fds() -> List[int]:
    """The descriptors open in this process, sorted (from /proc/self/fd; /dev/fd elsewhere).

    Listing the directory opens one descriptor of its own; it is closed by the time we look
    at the result, so every entry is checked with fstat and the ones gone since are dropped.
    """
    fds = []
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"  # Linux, else BSD/macOS
    for name in os.listdir(fd_dir):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append(fd)
    return sorted(fds)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Polls predicate until it is true (returns True) or timeout seconds pass (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class NaiveETServer:
    """A deliberately naive edge-triggered HTTP server: the plain reference that tests run
    beside fastloop to prove a scenario can catch the bug it is aimed at.

    It registers the listener with EPOLLIN | EPOLLET and accepts exactly ONE connection per
    readiness event (the bug of the seed question: a burst of connections coalesces into one
    edge, the rest stay queued in the backlog, and each later connection only brings one more
    edge, so the server falls further behind and new clients are never answered). Everything
    else is done right: connections are drained until EAGAIN and each request, once its head
    is complete, gets OK_RESPONSE and the connection is closed.

    Runs on one thread: start() binds and returns once it can accept; stop() wakes the loop,
    joins the thread and closes every descriptor it opened.
    """

    def __init__(self, host: str = LOOPBACK, backlog: int = 2048) -> None:
        self.host = host
        self.backlog = backlog
        self.port = 0
        self.accepted = 0
        self.answered = 0
        self._listener: Optional[socket.socket] = None
        self._ep: Optional[select.epoll] = None
        self._wake_r = self._wake_w = -1
        self._conns: dict = {}       # fd -> [socket, bytes received]
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "NaiveETServer":
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((self.host, 0))
        lsock.listen(self.backlog)
        lsock.setblocking(False)
        self._listener = lsock
        self.port = lsock.getsockname()[1]
        self._ep = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._ep.register(lsock.fileno(), select.EPOLLIN | select.EPOLLET)
        self._ep.register(self._wake_r, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="naive-et-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("NaiveETServer thread did not stop")
        self._thread = None
        for sock, _ in self._conns.values():
            sock.close()
        self._conns.clear()
        assert self._ep is not None and self._listener is not None
        self._ep.close()
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> "NaiveETServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the loop (its own thread) ---------------------------------------------------

    def _run(self) -> None:
        assert self._ep is not None and self._listener is not None
        lfd = self._listener.fileno()
        while not self._stopping:
            # The timeout only bounds how long a lost wake-up could delay stop().
            for fd, mask in self._ep.poll(1.0):
                if fd == lfd:
                    self._accept_one()
                elif fd in self._conns:
                    self._on_readable(fd)

    def _accept_one(self) -> None:
        # THE BUG, on purpose: one accept per edge, where a correct server loops to EAGAIN.
        assert self._listener is not None and self._ep is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        sock.setblocking(False)
        self.accepted += 1
        self._conns[sock.fileno()] = [sock, b""]
        self._ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
        # Data may have arrived before registration; registering reports it, but reading now
        # costs nothing and keeps the server's only fault the one above.
        self._on_readable(sock.fileno())

    def _on_readable(self, fd: int) -> None:
        entry = self._conns[fd]
        sock = entry[0]
        eof = False
        while True:  # drain to EAGAIN: the connection side is correct
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                eof = True
                break
            if not chunk:
                eof = True
                break
            entry[1] += chunk
        if b"\r\n\r\n" in entry[1]:
            try:
                sock.sendall(OK_RESPONSE)  # small: fits the send buffer of a fresh socket
                self.answered += 1
            except OSError:
                pass
            eof = True
        if eof:
            del self._conns[fd]
            sock.close()  # closing also removes it from the epoll set


def env_importing_this_fastloop() -> dict:
    """os.environ for a child Python that must import the fastloop these tests import: the
    installed package, or the in-place build when run from the source tree."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastloop.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
