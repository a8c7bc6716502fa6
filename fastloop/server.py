"""fastloop.Server: listening sockets, event-loop and handler threads, and their life cycle."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import warnings
from typing import Any

from ._core import Acceptor, ConnLimit, HandlerPool, Worker
from .app import App
from .asgi import ASGIApp, AsgiRunner, is_asgi_app
from .websocket import routes_app
from .listen import bind_tcp, bind_unix
from .routes import RouteTable

__all__ = ["Server", "bind_tcp", "bind_unix"]

log = logging.getLogger("fastloop")

DISPATCH_MODES = ("reuseport", "acceptor")
DEFAULT_THREADS = 4  # handler threads: enough that a few slow handlers leave room for others


def default_dispatch() -> str:
    """reuseport where the kernel spreads connections over SO_REUSEPORT listeners (Linux);
    elsewhere (macOS) it would not balance them, so one acceptor thread hands them out."""
    return "reuseport" if sys.platform.startswith("linux") else "acceptor"


class Server:
    """Serves an App over HTTP/1.1 on `runtime_threads` event-loop threads, with its handlers
    run by `threads` Python threads beside them (an event loop never runs application code,
    never waits on a client: see fastloop/core/handoff.pyx). The names are the ecosystem's:
    gunicorn's gthread `--threads` for handler threads, granian's `--runtime-threads` for loops.

    host/port: TCP over IPv4 or IPv6 (port 0 picks a free port; see .port).
    uds: a Unix socket path instead of TCP.
    dispatch: "reuseport" (each thread has its own SO_REUSEPORT listener) or "acceptor" (one
    thread accepts and hands connections out); None picks the platform's default.
    limits / timeouts: override fastloop's defaults (see fastloop.DEFAULT_LIMITS, ...).
    limit_concurrency: at most this many connections open at once (all threads together);
    a connection beyond it is answered 503 and closed, counted in stats()["rejected"].
    sockets: listening sockets to serve instead of binding (inherited from a supervisor, or
    --fd): one per event loop for reuseport dispatch, or one for acceptor dispatch (the default
    when runtime_threads > 1 share a single socket). The server takes them over and closes them
    at stop(); host, port and uds are then ignored.
    threads: Python threads that run handlers (fastloop routes and WSGI apps), 4 by default; a
    handler that blocks (a sleep, a slow query) holds one of them, never an event loop. An ASGI
    application (a fastloop.asgi.ASGIApp, or a bare ASGI callable, wrapped in one) runs on one
    asyncio loop instead (docs/asgi.md), started with its lifespan by start().
    runtime_threads: event-loop threads (1 by default); each owns its connections for life.
    handler_threads: the old spelling of threads, taken for one release with a
    DeprecationWarning. (Before it, `threads` counted event loops: an old threads=4 now gives
    4 handler threads and 1 loop, which serves the same application.)
    After start(), .routes is the RouteTable compiled from the app (fastloop/routes.py): all
    the core reads of it.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000,
                 threads: int | None = None, dispatch: str | None = None, backlog: int = 2048,
                 uds: str | None = None, limits: dict | None = None,
                 timeouts: dict | None = None, limit_concurrency: int | None = None,
                 sockets: list | None = None, runtime_threads: int = 1,
                 handler_threads: int | None = None) -> None:
        if handler_threads is not None:
            if threads is not None and threads != handler_threads:
                raise ValueError("handler_threads is the old spelling of threads: give one of "
                                 f"them, not both ({handler_threads} and {threads})")
            warnings.warn("Server(handler_threads=...) is deprecated and will be removed in the "
                          "next release: use threads= (handler threads; event loops are "
                          "runtime_threads=)", DeprecationWarning, stacklevel=2)
            threads = handler_threads
        threads = DEFAULT_THREADS if threads is None else threads
        if threads < 1:
            raise ValueError("threads (handler threads) must be at least 1")
        if runtime_threads < 1:
            raise ValueError("runtime_threads (event loops) must be at least 1")
        loops = runtime_threads
        if sockets is not None:
            if dispatch is None:
                dispatch = "reuseport" if len(sockets) == loops else "acceptor"
            needed = loops if dispatch == "reuseport" else 1
            if len(sockets) != needed:
                raise ValueError(f"{dispatch} dispatch over {loops} event loop(s) takes "
                                 f"{needed} socket(s), not {len(sockets)}")
            uds = None  # an inherited Unix socket's path belongs to whoever bound it
            if sockets[0].family != socket.AF_UNIX:
                host, port = sockets[0].getsockname()[:2]
        if dispatch is None:
            dispatch = "acceptor" if uds and loops > 1 else default_dispatch()
        if dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, not {dispatch!r}")
        if uds and dispatch == "reuseport" and loops > 1:
            raise ValueError("Unix sockets cannot be shared with SO_REUSEPORT: use dispatch='acceptor'")
        if not isinstance(app, App) and is_asgi_app(app):
            app = ASGIApp(app)  # a bare ASGI application: served as fastloop serve would
        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.threads = threads
        self.runtime_threads = runtime_threads
        self.dispatch = dispatch
        self.backlog = backlog
        self.limits = limits
        self.timeouts = timeouts
        self.limit_concurrency = limit_concurrency
        self._handlers: Any = None
        self.routes: RouteTable | None = None  # compiled by start(): what the core is given
        self._ws_runner: Any = None       # an App's WebSocket handlers' asyncio loop (AsgiRunner)
        self._sockets = sockets
        self._close_lock = threading.Lock()
        self._closing = False
        self._workers: list = []
        self._acceptor: Any = None
        self._loop_threads: list = []
        self._running = False

    # ---- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Binds, starts the threads and returns once the server accepts connections."""
        if self._running:
            raise RuntimeError("server already started")
        # The one thing the core is given of the app (fastloop/routes.py): static routes and
        # streaming paths are copied into C now; the app's Python routes stay live.
        self.routes = self.app.route_table()
        if isinstance(self.app, ASGIApp):
            # The lifespan startup runs before the server listens; a failure raises here.
            self._handlers = AsgiRunner(self.app)
            self._handlers.start()
            pool = self._handlers.pool
        else:
            self._handlers = pool = HandlerPool(self.routes, self.threads)
        ws_pool = None
        if self.routes.websocket_lookup is not None and not isinstance(self.app, ASGIApp):
            # The App's WebSocket handlers run on an asyncio loop of their own (websocket.py).
            ws_app = routes_app(self.routes.websocket_lookup)
            if self.routes.websocket_wrap is not None:
                ws_app = self.routes.websocket_wrap(ws_app)  # the access log, for one
            self._ws_runner = AsgiRunner(ASGIApp(ws_app,
                                                 lifespan="off", name="WebSocket routes"))
            self._ws_runner.start()
            ws_pool = self._ws_runner.pool
        try:
            listeners = self._listen()
        except BaseException:
            self._handlers.stop(0.0)
            self._stop_ws_runner()
            raise
        try:
            conn_limit = ConnLimit(self.limit_concurrency) if self.limit_concurrency else None
            is_tcp = listeners[0].family != socket.AF_UNIX
            self._workers = [Worker(i, self.routes, pool, is_tcp=is_tcp, limits=self.limits,
                                    timeouts=self.timeouts, conn_limit=conn_limit, ws_pool=ws_pool)
                             for i in range(self.runtime_threads)]
            if self.dispatch == "reuseport":
                for worker, sock in zip(self._workers, listeners):
                    worker.set_listener(sock.detach())
            else:
                self._acceptor = Acceptor(self._workers)
                self._acceptor.set_listener(listeners[0].detach())
        except BaseException:
            for sock in listeners:
                sock.close()
            self._handlers.stop(0.0)
            self._stop_ws_runner()
            raise
        if not isinstance(self._handlers, AsgiRunner):
            self._handlers.start()
        loops = self._workers + ([self._acceptor] if self._acceptor is not None else [])
        for loop in loops:
            name = "fastloop-acceptor" if loop is self._acceptor else f"fastloop-worker-{loop.index}"
            t = threading.Thread(target=self._run_loop, args=(loop,), name=name, daemon=True)
            t.start()
            self._loop_threads.append(t)
        if isinstance(self._handlers, AsgiRunner):
            self._handlers.loop_threads_started(self._loop_threads)
        self._closing = False
        self._running = True

    def stop(self, timeout: float = 5.0) -> None:
        """Stops accepting, lets requests in flight finish (answered with Connection: close),
        closes idle connections, and closes whatever remains after timeout seconds."""
        if not self._running:
            return
        if self._acceptor is not None:
            self._acceptor.stop(0.0)
        for worker in self._workers:
            worker.stop(timeout)
        for t in self._loop_threads:
            t.join(timeout + 5.0)
            if t.is_alive():
                log.error("fastloop: %s did not stop", t.name)
        # The loops are done: their connections are closed and counted. A handler still
        # running is left on its daemon thread; whatever it answers is dropped and counted.
        self._handlers.stop(0.05)
        self._stop_ws_runner()
        with self._close_lock:  # no stop_now() may wake a poller once it is closed
            self._closing = True
            if not any(t.is_alive() for t in self._loop_threads):
                for loop in self._workers + ([self._acceptor] if self._acceptor is not None else []):
                    loop.close()
        self._loop_threads = []
        self._running = False
        if self.uds:
            try:
                os.unlink(self.uds)
            except FileNotFoundError:
                pass

    def stop_now(self) -> None:
        """Thread-safe, while stop() runs in another thread: closes the connections still open
        at once instead of at stop()'s deadline (a second Ctrl-C)."""
        with self._close_lock:
            if self._running and not self._closing:
                for worker in self._workers:
                    worker.stop(0.0)

    @property
    def handler_threads(self) -> int:
        """The old name of .threads (deprecated, for one release)."""
        warnings.warn("Server.handler_threads is deprecated: use .threads", DeprecationWarning,
                      stacklevel=2)
        return self.threads

    @property
    def app_runner(self) -> Any:
        """The AsgiRunner serving an ASGI application (its asyncio loop), else None."""
        return self._handlers if isinstance(self._handlers, AsgiRunner) else None

    @property
    def alive(self) -> bool:
        """True while the server runs and every one of its event-loop threads is alive."""
        return self._running and all(t.is_alive() for t in self._loop_threads)

    def serve(self, timeout: float = 5.0) -> int:
        """start(), then as serve_started(timeout)."""
        from .process import run_until_signal  # process.py serves Servers: imported late
        return run_until_signal(self, timeout)

    def serve_started(self, timeout: float = 5.0) -> int:
        """For a server already start()ed: blocks until SIGINT or SIGTERM, then stops within
        timeout seconds; a second SIGINT closes every connection at once. Returns 0, or 1 after
        a forced stop or when an event loop died (fastloop.process.run_until_signal)."""
        from .process import run_until_signal
        return run_until_signal(self, timeout, start=False)

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.uds:
            return f"unix:{self.uds}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # ---- counters ---------------------------------------------------------------------

    def stats(self) -> dict:
        """Totals and per-event-loop counters ("workers"). accepted == closed + open always
        holds for the totals once the server is idle; while it runs each figure is exact but
        read at its own instant."""
        per_worker = [w.stats() for w in self._workers]
        totals: dict = {}
        for s in per_worker:
            merge(totals, s)
        if self._acceptor is not None:
            a = self._acceptor.stats()
            in_transit = a["handed_off"] - sum(s["accepted"] for s in per_worker)
            merge(totals, {k: v for k, v in a.items() if k not in ("open", "accepted")})
            totals["accepted"] = a["accepted"]
            totals["open"] = totals.get("open", 0) + in_transit
        if self._handlers is not None:
            totals.update(self._handlers.stats())
        if self._ws_runner is not None:
            merge(totals, {k: v for k, v in self._ws_runner.stats().items() if k.startswith("asgi_")})
        totals["threads"] = self.threads  # the settings, so a reader knows what was counted
        totals["runtime_threads"] = self.runtime_threads
        # What the application layer counts (fastloop._observe: request durations, --metrics).
        app_counters = getattr(self.app, "_counters", None)
        if app_counters is not None:
            merge(totals, app_counters())
        totals["workers"] = per_worker
        return totals

    # ---- internals --------------------------------------------------------------------

    def _stop_ws_runner(self) -> None:
        if self._ws_runner is not None:
            self._ws_runner.stop(0.05)  # (again: nothing; stats() still reads its counters)

    def _run_loop(self, loop: Any) -> None:
        try:
            loop.run()
        except BaseException:
            log.exception("fastloop: event loop %s failed", threading.current_thread().name)

    def _listen(self) -> list:
        if self._sockets is not None:
            socks, self._sockets = self._sockets, None  # taken over once: start() detaches them
            for sock in socks:
                sock.setblocking(False)
            return socks
        if self.uds:
            return [bind_unix(self.uds, self.backlog)]
        count = self.runtime_threads if self.dispatch == "reuseport" else 1
        socks = bind_tcp(self.host, self.port, count, self.dispatch == "reuseport", self.backlog)
        self.port = socks[0].getsockname()[1]
        return socks


def merge(into: dict, counters: dict) -> None:
    """Adds counters into `into`, key by key, nested dicts (counts by errno name) included."""
    for key, value in counters.items():
        if isinstance(value, dict):
            merge(into.setdefault(key, {}), value)
        elif isinstance(value, (int, float)):
            into[key] = into.get(key, 0) + value
