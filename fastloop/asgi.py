"""ASGI 3 (HTTP 2.4, lifespan 2.0): run FastAPI, Starlette, Django, Litestar, Quart... apps.

    from fastloop.asgi import ASGIApp
    fastloop.Server(ASGIApp(asgi_app)).serve()   # or: fastloop serve module:app

Theory of operation. The event loops stay in C and never run the application: every request
goes, as a job, to one asyncio loop per server, running on a thread of its own. The core's
AsgiBridge (fastloop/core/asgi_bridge.pyx) wakes that loop once per batch through a pipe and runs
each job as a task; this module owns the loop's thread, chooses the loop (uvloop when
installed, as uvicorn does), and speaks the lifespan protocol: startup before the server
accepts a connection, shutdown once its connections are drained.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
from typing import Any, Callable, Optional

from ._core import AsgiBridge, ClientDisconnected, WebSocketConfig
from .app import App
from .config import WS_MODES
from .routes import RouteTable

__all__ = ["ASGIApp", "ClientDisconnected", "LifespanFailed", "is_asgi_app"]

log = logging.getLogger("fastloop")

LIFESPAN_MODES = ("auto", "on", "off")
LOOPS = ("auto", "asyncio", "uvloop")
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}

# asyncio.Task(..., eager_start=True) (3.12+) runs a WebSocket's coroutine at once, inside the
# bridge's callback, until it first waits. (An HTTP call runs on the core's own light task,
# which always starts so: core/asgi_task.pyx.)
EAGER_TASKS = sys.version_info >= (3, 12)


class LifespanFailed(RuntimeError):
    """The application's lifespan startup failed (or, with lifespan "on", is not supported)."""


def is_asgi_app(obj: Any) -> bool:
    """An ASGI 3 application: a coroutine function (or an object whose __call__ is one)."""
    if isinstance(obj, App):
        return False
    call = obj if inspect.isroutine(obj) else getattr(obj, "__call__", None)
    return inspect.iscoroutinefunction(call)


def _app_name(app: Any) -> str:
    name = getattr(app, "__qualname__", None) or type(app).__qualname__
    module = getattr(app, "__module__", None) or type(app).__module__
    return f"{module}:{name}" if module else name


class ASGIApp(App):
    """An ASGI application served by fastloop. Every path goes to it; a request with a body
    streams it to the application (http.request with more_body).

    lifespan: "auto" (run it if the application supports it), "on" (it must), "off".
    loop: "auto" (uvloop if installed, else asyncio), "asyncio" or "uvloop".
    root_path: the ASGI root_path (the prefix the application is mounted under).
    name: how logs name the application (default: its module and name).
    batch_scheduling: run the asyncio thread and the event loops under SCHED_BATCH (Linux;
    see share_cores()).
    ws: "auto" (WebSocket upgrades reach the application: websocket scopes) or "none" (served
    as plain HTTP requests); ws_max_size, ws_per_message_deflate: see docs/websockets.md.
    on_rejected: told of each request the core answers with an error itself (the access log;
    RouteTable.on_rejected)."""

    def __init__(self, asgi_app: Callable, lifespan: str = "auto", loop: str = "auto",
                 root_path: str = "", name: Optional[str] = None,
                 shutdown_timeout: float = 10.0, batch_scheduling: bool = True, ws: str = "auto",
                 ws_max_size: int = 16 * 1024 * 1024, ws_per_message_deflate: bool = True) -> None:
        super().__init__()
        if lifespan not in LIFESPAN_MODES:
            raise ValueError(f"lifespan must be one of {', '.join(LIFESPAN_MODES)}, not {lifespan!r}")
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {loop!r}")
        self.asgi_app = asgi_app
        self.lifespan = lifespan
        self.loop = loop
        self.root_path = root_path
        self.name = name or _app_name(asgi_app)
        self.shutdown_timeout = shutdown_timeout
        self.batch_scheduling = batch_scheduling
        if ws not in WS_MODES:
            raise ValueError(f"ws must be one of {', '.join(WS_MODES)}, not {ws!r}")
        self.websockets = ws != "none"  # the core hands upgrades over (ws_conn.pyx)
        self.ws_config = WebSocketConfig(max_size=ws_max_size, per_message_deflate=ws_per_message_deflate)
        self.on_rejected: Optional[Callable[[int, Any, str, int], None]] = None

    def route_table(self) -> RouteTable:
        # Every request goes to the asyncio loop's bridge, which never asks the lookup; a
        # request with a body streams it to the application.
        return super().route_table().replace(stream_bodies=True, on_rejected=self.on_rejected,
                                             websocket_any=self.websockets)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop  # type: ignore[import-not-found]
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def share_cores(native_id: int) -> bool:
    """Puts a thread of an ASGI server under SCHED_BATCH (Linux; 0 is the calling thread).
    True if done.

    Why: the event loops and the asyncio thread hand each other every request and answer.
    When they share a core (one pinned worker, or more workers than cores under load), each
    hand-over woke the other thread, and a woken SCHED_OTHER thread preempts the running one:
    about two context switches per request, each evicting the application's working set.
    A SCHED_BATCH thread never preempts on wake-up; it runs when the running thread waits
    (the asyncio thread once its ready tasks are done) or its time slice ends, and then finds
    everything queued meanwhile: one switch per batch. On an idle core it runs at once, as
    before; fairness between threads is unchanged (CFS/EEVDF still share the core by weight).
    The cost: on a saturated core an event loop may wait up to one time slice (a few ms)."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(native_id, policy, os.sched_param(0))
    except OSError:  # (not Linux-like; or the thread has just ended)
        return False
    return True


class AsgiRunner:
    """The asyncio side of a Server serving an ASGIApp: its loop thread, the bridge the event
    loops queue jobs on, the tasks answering them, and the lifespan."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop = new_event_loop(app.loop)
        kind = type(self.loop).__module__.split(".")[0]
        self.loop_name = "uvloop" if kind == "uvloop" else "asyncio"
        self.state: dict = {}
        base = {"asgi": ASGI_VERSION, "scheme": "http", "root_path": app.root_path,
                "state": self.state,
                "extensions": {"http.response.pathsend": {}, "http.response.trailers": {}}}
        self.bridge = AsgiBridge(app.asgi_app, self.loop, base, app.name, EAGER_TASKS)
        self.bridge.ws_config = app.ws_config
        self.lifespan = Lifespan(app, self.loop, self.state)
        self.thread = threading.Thread(target=self._run, name="fastloop-asgi", daemon=True)
        self.done = self.loop.create_future()  # set by stop(): the root task returns

    @property
    def pool(self) -> AsgiBridge:
        return self.bridge

    def _run(self) -> None:
        if self.app.batch_scheduling:
            share_cores(0)
        asyncio.set_event_loop(self.loop)
        self.loop.add_reader(self.bridge.fileno(), self.bridge.on_readable)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.remove_reader(self.bridge.fileno())

    async def _main(self) -> None:
        """The loop's root task, for as long as it serves: run_until_complete's, as under
        asyncio.run, because anyio looks for that task (find_root_task) to tie its worker
        threads to (to_thread.run_sync, Starlette's run_in_threadpool, FastAPI's sync
        endpoints). Without it, anyio ties them to the request's task, and every request
        that finds no idle worker starts a thread that stops when that request ends."""
        await self.done

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def start(self) -> None:
        """Starts the loop's thread and runs the lifespan startup: returns once the
        application is ready, or raises LifespanFailed."""
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.lifespan.startup(), self.loop).result()
        except BaseException:
            self.stop(0.0, shutdown=False)
            raise

    def loop_threads_started(self, threads: list) -> None:
        """The Server's event-loop threads are running: they share cores with this one."""
        if self.app.batch_scheduling:
            for t in threads:
                if t.native_id is not None:
                    share_cores(t.native_id)

    def stop(self, timeout: float = 0.05, shutdown: bool = True) -> None:
        """After the event loops stopped: the lifespan shutdown, then the tasks still running
        are cancelled (their connections are closed already) and the loop ends."""
        if not self.thread.is_alive():
            return
        if shutdown:
            fut = asyncio.run_coroutine_threadsafe(self.lifespan.shutdown(), self.loop)
            try:
                fut.result(self.app.shutdown_timeout)
            except Exception:
                log.exception("fastloop: the lifespan shutdown of %s failed", self.app.name)
        asyncio.run_coroutine_threadsafe(self._cancel_tasks(timeout), self.loop).result(timeout + 5.0)
        self.loop.call_soon_threadsafe(self._end)
        self.thread.join(5.0)
        self.bridge.close()
        if not self.thread.is_alive():
            self.loop.close()

    async def _cancel_tasks(self, timeout: float) -> None:
        tasks = [t for t in self.bridge.running if not t.done()]
        if tasks:
            await asyncio.wait([_done_future(self.loop, t) for t in tasks], timeout=timeout)
        lifespan = self.lifespan.task
        if lifespan is not None and not lifespan.done():
            # After a failed startup (or a shutdown that timed out) the application may still
            # await receive(): a task left pending is reported, noisily, when the loop closes.
            tasks.append(lifespan)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait([_done_future(self.loop, t) for t in tasks], timeout=1.0)

    def stats(self) -> dict:
        out = self.bridge.stats()
        out["handlers_busy"] = len(self.bridge.running)
        return out


def _done_future(loop: asyncio.AbstractEventLoop, task: Any) -> "asyncio.Future[None]":
    """A future of loop, done once task is: a call's light task (core/asgi_task.pyx) is not a
    Future, which asyncio.wait requires before CPython 3.11."""
    fut: "asyncio.Future[None]" = loop.create_future()

    def done(_: Any) -> None:
        if not fut.done():
            fut.set_result(None)
    task.add_done_callback(done)
    return fut


class Lifespan:
    """The lifespan protocol (asgiref lifespan spec 2.0), run on the ASGI loop."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop, state: dict) -> None:
        self.app = app
        self.loop = loop
        self.state = state
        self.supported = False
        self.task: Optional[asyncio.Task] = None
        self.messages: Optional[asyncio.Queue] = None
        self.answer: Optional[asyncio.Future] = None

    async def startup(self) -> None:
        if self.app.lifespan == "off":
            return
        self.messages = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self.answer = self.loop.create_future()
        self.task = self.loop.create_task(self._main(scope))
        await self.messages.put({"type": "lifespan.startup"})
        await asyncio.wait([self.answer, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.answer.done():
            kind, message = self.answer.result()
            if kind == "lifespan.startup.complete":
                self.supported = True
                return
            raise LifespanFailed(f"the lifespan startup of {self.app.name} failed"
                                 + (f": {message}" if message else ""))
        # The application ended (or raised) without answering: it has no lifespan support.
        exc = self.task.exception()
        if self.app.lifespan == "on":
            raise LifespanFailed(f"{self.app.name} does not support the lifespan protocol"
                                 + (f" ({type(exc).__name__}: {exc})" if exc else ""))
        log.info("fastloop: %s does not support ASGI lifespan; going on without it", self.app.name)

    async def _main(self, scope: dict) -> None:
        await self.app.asgi_app(scope, self._receive, self._send)

    async def _receive(self) -> dict:
        assert self.messages is not None
        return await self.messages.get()

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise RuntimeError(f"fastloop: unexpected lifespan message {kind!r}")
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((kind, message.get("message", "")))

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        assert self.messages is not None
        self.answer = self.loop.create_future()
        await self.messages.put({"type": "lifespan.shutdown"})
        await asyncio.wait([self.answer, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.answer.done():
            kind, message = self.answer.result()
            if kind == "lifespan.shutdown.failed":
                log.error("fastloop: the lifespan shutdown of %s failed: %s", self.app.name, message)
        elif self.task.exception() is not None:
            log.error("fastloop: the lifespan of %s raised during shutdown", self.app.name,
                      exc_info=self.task.exception())
