"""Running a started server until a signal says stop: the one path used by `fastloop demo`,
Server.serve(), `fastloop serve` in one process, and every supervised worker process.

Theory of operation. Signals are received as data (SignalInbox): the main thread waits on a
self-pipe and a short tick, and decides. SIGTERM, and SIGINT, stop gracefully: a thread runs
server.stop(grace) while the main thread keeps watching. A SIGINT during that stop forces it,
the same way everywhere: every connection is closed at once (server.stop_now()), the exit
status becomes 1, and if a handler still runs FORCE_WAIT seconds later KeyboardInterrupt
leaves it behind (only leaving the process ends it).

A supervised worker (given a WorkerLink) also writes to its supervisor, one byte each:
  R  started and accepting     M  reached its request limit     H  heartbeat
The heartbeat comes from this main-thread loop every HEARTBEAT seconds while every event
loop thread is alive. It needs the GIL and a running process, so a worker stopped by a signal,
or with a handler that holds the GIL, falls silent, and the supervisor's --timeout-worker
sees it. A supervised worker ignores SIGHUP and a first SIGINT (a terminal sends them to the
whole process group: the supervisor decides), and stops when its supervisor is gone.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import signal
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["SignalInbox", "WorkerLink", "run_until_signal", "serve_worker", "fork_linked", "TICK",
           "FORCE_WAIT", "HEARTBEAT"]

log = logging.getLogger("fastloop")

TICK = 0.25             # how often the loop looks at counters and at the parent process
FORCE_WAIT = 1.0        # after a forced stop, how long a handler still running is waited for
HEARTBEAT = 0.5         # seconds between two heartbeats of a supervised worker


class SignalInbox:
    """Signals, received as data: while active, each signal in `signums` is recorded and wakes
    wait() through a self-pipe (signal.set_wakeup_fd), so no handler runs code that could
    deadlock against the interrupted one. Main thread only. A context manager that restores
    the previous handlers."""

    def __init__(self, signums: Iterable[int], ignore: Iterable[int] = ()) -> None:
        self.signums = tuple(signums)
        self.ignore = tuple(ignore)
        self.received: Deque[int] = collections.deque()
        self._previous: Dict[int, object] = {}
        self._old_wakeup = -1
        self._r = self._w = -1

    def __enter__(self) -> "SignalInbox":
        self._r, self._w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        if self.signums or self.ignore:  # only the main thread may touch signals
            self._old_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for signum in self.signums:
            self._previous[signum] = signal.signal(signum, self._record)
        for signum in self.ignore:
            self._previous[signum] = signal.signal(signum, signal.SIG_IGN)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self.signums or self.ignore:
            signal.set_wakeup_fd(self._old_wakeup)
        os.close(self._r)
        os.close(self._w)

    def fds(self) -> Tuple[int, int]:
        """The self-pipe, which a forked child must close."""
        return self._r, self._w

    def _record(self, signum: int, frame: object) -> None:
        self.received.append(signum)  # deque.append is atomic; the wake-up byte is already sent

    def wait(self, timeout: float, fds: Sequence[int] = ()) -> Tuple[List[int], List[int]]:
        """Blocks until a signal arrives, one of fds is readable, or timeout seconds pass.
        Returns (signals received since the last call, readable fds among `fds`)."""
        ready: List[int] = []
        if not self.received:
            readable, _, _ = select.select([self._r, *fds], [], [], timeout)
            ready = [fd for fd in readable if fd != self._r]
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass
        signums = []
        while self.received:
            signums.append(self.received.popleft())
        return signums, ready


class WorkerLink:
    """A supervised worker's side of its status pipe (see the module docstring)."""

    def __init__(self, status_fd: int, parent_pid: int,
                 max_requests: Optional[int] = None) -> None:
        self.status_fd = status_fd
        self.parent_pid = parent_pid
        self.max_requests = max_requests
        self.last_beat = 0.0
        # Never block on a supervisor that does not read: a lost heartbeat is harmless.
        os.set_blocking(status_fd, False)

    def send(self, message: bytes) -> None:
        try:
            os.write(self.status_fd, message)
        except (BlockingIOError, BrokenPipeError):
            pass

    def beat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT:
            self.last_beat = now
            self.send(b"H")

    def orphaned(self) -> bool:
        return os.getppid() != self.parent_pid


def run_until_signal(server: Any, grace: float, *, start: bool = True,
                     started: Optional[Callable[[], None]] = None,
                     link: Optional[WorkerLink] = None) -> int:
    """Starts server (unless start=False: it already runs), calls started(), and serves until
    told to stop, then stops it within grace seconds. Returns the exit status: 0, or 1 if a
    second SIGINT forced the stop or an event loop died. Signals are handled only from the
    main thread; elsewhere only a dead loop (or, supervised, a gone parent) ends the wait."""
    main = threading.current_thread() is threading.main_thread()
    signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    status = 0
    with SignalInbox(signums if main else ()) as inbox:
        if start:
            server.start()
        if started is not None:
            started()
        if link is not None:
            link.send(b"R")
        retiring = False
        reason = None
        while reason is None:
            signals, _ = inbox.wait(TICK)
            for signum in signals:
                if signum == signal.SIGHUP or (signum == signal.SIGINT and link is not None):
                    if link is None:
                        log.warning("fastloop: SIGHUP ignored: replacing workers needs the "
                                    "supervisor (workers > 1 or limit_max_requests)")
                else:
                    reason = signal.Signals(signum).name
            if link is not None and link.orphaned():
                reason = "the supervisor is gone"
            if not server.alive:
                log.error("fastloop: an event loop died; stopping this process")
                reason, status = "an event loop died", 1
            if link is None:
                continue
            link.beat()
            if link.max_requests and not retiring \
                    and server.stats()["requests"] >= link.max_requests:
                retiring = True  # the supervisor starts a successor, then sends SIGTERM
                log.info("fastloop: worker %d answered %d requests; asking to be replaced",
                         os.getpid(), link.max_requests)
                link.send(b"M")
        log.info("fastloop: stopping (%s): finishing requests in flight, for up to %gs",
                 reason, grace)
        status = max(status, _stop(server, grace, inbox, link))
    return status


def _stop(server: Any, grace: float, inbox: SignalInbox, link: Optional[WorkerLink]) -> int:
    """Stops server gracefully in a thread, watching for a second SIGINT meanwhile."""
    # A daemon thread: after a forced stop the interpreter may exit while it still waits
    # for a handler that does not return.
    stopper = threading.Thread(target=server.stop, args=(grace,), name="fastloop-stop",
                               daemon=True)
    stopper.start()
    status = 0
    forced_at = None
    while stopper.is_alive():
        signals, _ = inbox.wait(TICK)
        if link is not None:
            link.beat()  # a worker that stops slowly is not a hung one
        if signal.SIGINT in signals and forced_at is None:
            log.warning("fastloop: second SIGINT: closing every connection now")
            server.stop_now()
            forced_at = time.monotonic()
            status = 1
        if forced_at is not None and time.monotonic() - forced_at > FORCE_WAIT:
            # A handler is still running; only leaving the process ends it.
            log.warning("fastloop: a handler is still running; leaving it behind")
            raise KeyboardInterrupt
    return status


def serve_worker(load: Callable[[], Any], sockets: list, config: Any, link: WorkerLink,
                 boot_error: int, snapshots: Any = None) -> int:
    """The body of a supervised worker process, after the fork: loads the application (here,
    so each worker runs the code on disk when it starts, and threads the application starts at
    import run in it), serves it on `sockets` until told to stop, and returns the exit status:
    boot_error if the application could not be loaded. With snapshots (the supervisor's
    fastloop.metrics.Snapshots, --metrics), it writes its counters there while it serves."""
    from .loader import AppLoadError
    from .server import Server  # server.py imports this module for Server.serve()
    try:
        server = Server(load(), sockets=sockets, **config.server_kwargs())
    except Exception as exc:
        if isinstance(exc, AppLoadError):  # one line says it all
            log.error("fastloop: worker %d: %s", os.getpid(), exc)
        else:
            log.exception("fastloop: worker %d could not load the application", os.getpid())
        return boot_error
    from .asgi import LifespanFailed
    writer = snapshots.writer(server) if snapshots is not None else None
    try:
        status = run_until_signal(server, config.timeout_graceful_shutdown, link=link)
    except LifespanFailed as exc:
        log.error("fastloop: worker %d: %s", os.getpid(), exc)
        return boot_error
    if writer is not None:
        writer.close()  # the final counts, after the last request
    return status


def fork_linked(inbox: SignalInbox, body: Callable[[WorkerLink], int], what: str,
                max_requests: Optional[int] = None) -> Tuple[int, int]:
    """Forks a child linked to this process by a status pipe, and returns (its pid, the read
    end of the pipe). The child resets its signals first, before anything can block (SIGINT
    and SIGHUP ignored: a terminal sends them to the whole group and the parent decides),
    closes the parent's inbox, and exits with body(link)'s status; it never returns."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    status = 1  # pragma: no cover - the rest runs in the child
    try:
        os.close(r)
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for signum in (signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for fd in inbox.fds():
            os.close(fd)
        status = body(WorkerLink(w, parent, max_requests))
    except KeyboardInterrupt:  # a forced stop left a handler running
        status = 1
    except BaseException:
        log.exception("fastloop: %s %d failed", what, os.getpid())
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip the parent's atexit handlers and finally blocks: they are not ours to run.
        os._exit(status)
