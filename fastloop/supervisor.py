"""Processes and signals: one server process, or a supervisor over pre-forked workers.

Theory of operation.

The supervisor binds every listening socket before it forks, and keeps its copies open for
as long as it runs. A worker process is given the sockets of its *slot*: on Linux (reuseport
dispatch) `threads` sockets of one SO_REUSEPORT group per slot, so the kernel balances
connections over every thread of every worker; otherwise (acceptor dispatch, a Unix socket,
an inherited --fd) one socket shared by all workers. Because the supervisor's copies keep
each socket open, a worker that exits loses no connection still queued on its sockets: they
wait there for the worker that takes the slot over. That is what lets a worker be replaced,
for SIGHUP or --limit-max-requests, without refusing a connection.

Workers talk to the supervisor through one pipe each, one byte per message:
  R  the server is started and accepting        M  the worker reached its request limit
A replacement (SIGHUP: every slot, one by one; M: that slot) forks the successor first and
sends SIGTERM to the old worker only once the successor said R, so capacity never drops.

Signals. Supervisor: SIGTERM or SIGINT stops gracefully (SIGTERM to every worker, SIGKILL to
those still alive after timeout_graceful_shutdown + SLACK); a SIGINT during that forces at
once (SIGKILL); SIGHUP replaces the workers. Worker: SIGTERM stops gracefully; SIGINT and
SIGHUP are ignored, since a terminal sends them to the whole process group and the supervisor
decides. A worker whose supervisor is gone stops by itself. A single server process (workers=1)
handles SIGTERM and SIGINT itself, the same way.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import select
import signal
import socket
import sys
import threading
import time
from typing import Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from .app import App
from .config import Config
from .metrics import SupervisorMetrics
from .server import Server, bind_tcp, bind_unix, default_dispatch

__all__ = ["Supervisor", "SignalInbox", "serve_process", "listener_sets", "inherited_socket"]

log = logging.getLogger("fastloop")

BOOT_ERROR = 3          # a worker's exit status when it could not load the app (gunicorn's too)
SLACK = 5.0             # beyond the graceful timeout, for the worker's own clean-up
READY_TIMEOUT = 60.0    # a successor that is not accepting after this is given up
TICK = 0.25             # how often loops look at counters and at the parent process
FORCE_WAIT = 1.0        # after a forced stop, how long a handler still running is waited for


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


def serve_process(server: Server, config: Config, *, status_fd: Optional[int] = None,
                  parent_pid: Optional[int] = None, max_requests: Optional[int] = None) -> int:
    """Starts server and runs it in this process until told to stop, then stops it gracefully.
    Returns the exit status: 0, or 1 if a second SIGINT forced the stop or a loop died.

    Supervised (parent_pid given): writes R, then M once `max_requests` are answered, to
    status_fd, stops on SIGTERM or when the parent is gone, and ignores SIGINT and SIGHUP.
    Alone: stops on SIGTERM or SIGINT; SIGINT while stopping closes every connection at once,
    and raises KeyboardInterrupt if a handler still runs FORCE_WAIT seconds later (the event
    loops are left to die with the process). Signals are handled only from the main thread."""
    supervised = parent_pid is not None
    main = threading.current_thread() is threading.main_thread()
    signums = (signal.SIGTERM,) if supervised else (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    ignore = (signal.SIGINT, signal.SIGHUP) if supervised else ()
    inbox = SignalInbox(signums if main else (), ignore if main else ())
    status = 0
    with inbox:
        server.start()
        if status_fd is not None:
            os.write(status_fd, b"R")
        retiring = False
        reason = None
        while reason is None:
            signals, _ = inbox.wait(TICK)
            for signum in signals:
                if signum == signal.SIGHUP:
                    log.warning("fastloop: SIGHUP ignored: replacing workers needs the supervisor "
                                "(workers > 1 or limit_max_requests)")
                else:
                    reason = signal.Signals(signum).name
            if supervised and os.getppid() != parent_pid:
                reason = "the supervisor is gone"
            if not server.alive:
                log.error("fastloop: an event loop died; stopping this process")
                reason, status = "an event loop died", 1
            if max_requests and not retiring and server.stats()["requests"] >= max_requests:
                retiring = True  # the supervisor starts a successor, then sends SIGTERM
                log.info("fastloop: worker %d answered %d requests; asking to be replaced",
                         os.getpid(), max_requests)
                if status_fd is not None:
                    os.write(status_fd, b"M")
        grace = config.timeout_graceful_shutdown
        log.info("fastloop: stopping (%s): finishing requests in flight, for up to %gs",
                 reason, grace)
        # A daemon thread: after a forced stop the interpreter may exit while it still waits
        # for a handler that does not return.
        stopper = threading.Thread(target=server.stop, args=(grace,), name="fastloop-stop",
                                   daemon=True)
        stopper.start()
        forced_at = None
        while stopper.is_alive():
            signals, _ = inbox.wait(TICK)
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


def inherited_socket(fd: int) -> socket.socket:
    """The listening stream socket at descriptor fd (--fd), non-blocking. Raises ValueError if
    fd is not one."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"--fd {fd}: not a socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError(f"--fd {fd}: not a stream socket")
    accepting = getattr(socket, "SO_ACCEPTCONN", None)
    if accepting is not None and not sock.getsockopt(socket.SOL_SOCKET, accepting):
        sock.detach()
        raise ValueError(f"--fd {fd}: the socket is not listening")
    sock.setblocking(False)
    return sock


def listener_sets(config: Config, slots: int) -> Tuple[List[List[socket.socket]], str]:
    """Binds (or adopts, for --fd) the listening sockets of `slots` worker processes: a list of
    sockets per slot, and the URL they answer on. See the module docstring for the layout."""
    if config.fd is not None:
        sock = inherited_socket(config.fd)
        return [[sock]] * slots, f"fd:{config.fd}"
    if config.uds:
        return [[bind_unix(config.uds, config.backlog)]] * slots, f"unix:{config.uds}"
    dispatch = config.dispatch or default_dispatch()
    if dispatch == "reuseport":
        socks = bind_tcp(config.host, config.port, slots * config.threads, True, config.backlog)
        sets = [socks[i * config.threads:(i + 1) * config.threads] for i in range(slots)]
    else:
        sets = [bind_tcp(config.host, config.port, 1, False, config.backlog)] * slots
    host, port = sets[0][0].getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return sets, f"http://{host}:{port}/"


class _Child:
    __slots__ = ("pid", "slot", "pipe", "started", "ready", "retiring")

    def __init__(self, pid: int, slot: int, pipe: int) -> None:
        self.pid = pid
        self.slot = slot
        self.pipe = pipe        # read end of its status pipe; -1 once at EOF and closed
        self.started = time.monotonic()
        self.ready = False
        self.retiring = False   # sent SIGTERM


class Supervisor:
    """Runs config.workers pre-forked worker processes, each serving `load()` (called in the
    worker, after fork) on the sockets of its slot, and keeps them running until a signal
    stops it. run() returns the exit status: 0 after a graceful stop, 1 after a forced one or
    when the first workers cannot load the app."""

    def __init__(self, load: Callable[[], App], config: Config,
                 listeners: List[List[socket.socket]], url: str) -> None:
        self.load = load
        self.config = config
        self.listeners = listeners
        self.url = url
        self.children: Dict[int, _Child] = {}
        self.serving: List[Optional[int]] = [None] * len(listeners)   # slot -> pid
        self.pending: Deque[int] = collections.deque()     # slots waiting to be replaced
        self.successor: Optional[int] = None                # pid booting to take a slot over
        self.respawn_at: Dict[int, float] = {}              # slot -> when to fork again
        self.failures = [0] * len(listeners)                # quick deaths in a row, per slot
        self.ever_ready = False
        self.stopping = False
        self.killed = False
        self.deadline = 0.0
        self.status = 0
        self.inbox: Optional[SignalInbox] = None
        self.metrics: Optional[SupervisorMetrics] = None   # --metrics: see fastloop.metrics

    def run(self) -> int:
        signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        if self.config.metrics:
            self.metrics = SupervisorMetrics(self, self.config.metrics_address,
                                             self.config.metrics_port)
            log.info("fastloop: metrics on %s", self.metrics.url)
        try:
            with SignalInbox(signums) as inbox:
                self.inbox = inbox
                log.info("fastloop: supervisor %d: %d workers x %d thread(s) on %s",
                         os.getpid(), len(self.listeners), self.config.threads, self.url)
                for slot in range(len(self.listeners)):
                    self.spawn(slot)
                while self.children or not self.stopping:
                    pipes = [c.pipe for c in self.children.values() if c.pipe >= 0]
                    signals, readable = inbox.wait(TICK, pipes)
                    for signum in signals:
                        self.on_signal(signum)
                    for fd in readable:
                        self.on_message(fd)
                    self.reap()
                    if self.stopping:
                        if not self.killed and time.monotonic() > self.deadline:
                            log.error("fastloop: workers still running after the graceful "
                                      "timeout: killing them")
                            self.kill_all()
                    else:
                        self.respawn_due()
                        self.advance_replacement()
        finally:
            for child in list(self.children.values()):  # only if run() itself failed
                self.signal(child, signal.SIGKILL)
            self.close_listeners()
            if self.metrics is not None:
                self.metrics.close()
            if self.config.uds and self.config.fd is None:
                try:
                    os.unlink(self.config.uds)
                except FileNotFoundError:
                    pass
        log.info("fastloop: supervisor %d stopped", os.getpid())
        return self.status

    # ---- events ---------------------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reap() runs on every turn
        if signum == signal.SIGHUP:
            if not self.stopping:
                log.info("fastloop: SIGHUP: replacing the workers one by one")
                self.pending = collections.deque(range(len(self.listeners)))
            return
        if self.stopping:
            if signum == signal.SIGINT and not self.killed:
                log.warning("fastloop: second SIGINT: killing the workers now")
                self.status = 1
                self.kill_all()
            return
        self.begin_stop(signal.Signals(signum).name)

    def on_message(self, fd: int) -> None:
        child = next((c for c in self.children.values() if c.pipe == fd), None)
        if child is None:
            return
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:  # EOF: the worker is exiting; reap() collects it
            os.close(fd)
            child.pipe = -1
            return
        if b"R" in data and not child.ready:
            child.ready = True
            self.ever_ready = True
            log.info("fastloop: worker %d (slot %d) is accepting", child.pid, child.slot)
        if b"M" in data and not self.stopping and child.slot not in self.pending \
                and self.serving[child.slot] == child.pid:
            self.pending.append(child.slot)

    def reap(self) -> None:
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if child.pipe >= 0:
                os.close(child.pipe)
            code = os.waitstatus_to_exitcode(wstatus)
            how = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            if pid == self.successor:
                self.successor = None
                self.pending.clear()
                if not self.stopping:
                    log.error("fastloop: new worker %d failed before accepting (%s); "
                              "replacement abandoned, the running workers keep serving", pid, how)
                    if self.serving[child.slot] is None:  # its predecessor died meanwhile
                        self.respawn_at[child.slot] = time.monotonic() + self.backoff(child)
            elif self.serving[child.slot] == pid:
                self.serving[child.slot] = None
                if self.stopping:
                    log.info("fastloop: worker %d stopped (%s)", pid, how)
                elif code == BOOT_ERROR and not self.ever_ready:
                    log.error("fastloop: worker %d could not load the application; stopping", pid)
                    self.status = 1
                    self.begin_stop("the application did not load")
                elif self.successor is not None and self.children[self.successor].slot == child.slot:
                    log.error("fastloop: worker %d (slot %d) died (%s); its successor is starting",
                              pid, child.slot, how)
                else:
                    delay = self.backoff(child)
                    log.error("fastloop: worker %d (slot %d) died (%s); replacing it%s", pid,
                              child.slot, how, f" in {delay:.1f}s" if delay else "")
                    self.respawn_at[child.slot] = time.monotonic() + delay
            else:
                log.info("fastloop: worker %d stopped (%s)", pid, how)

    def backoff(self, child: _Child) -> float:
        """Seconds before a dead worker's slot is forked again: none, unless workers keep
        dying within a second of their start; then 0.2s, doubling up to 10s."""
        quick = time.monotonic() - child.started < 1.0
        self.failures[child.slot] = self.failures[child.slot] + 1 if quick else 0
        return min(0.1 * 2 ** self.failures[child.slot], 10.0) if quick else 0.0

    def respawn_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.respawn_at.items()):
            if when <= now:
                del self.respawn_at[slot]
                self.spawn(slot)

    def advance_replacement(self) -> None:
        """One slot at a time: fork its successor; once that accepts, retire the old worker."""
        if self.successor is not None:
            child = self.children[self.successor]
            if child.ready:
                old, self.serving[child.slot] = self.serving[child.slot], child.pid
                self.successor = None
                if old is not None and old in self.children:
                    self.signal(self.children[old], signal.SIGTERM)
            elif time.monotonic() - child.started > READY_TIMEOUT:
                log.error("fastloop: new worker %d not accepting after %gs; killing it",
                          child.pid, READY_TIMEOUT)
                self.signal(child, signal.SIGKILL)
            return
        while self.pending:
            slot = self.pending.popleft()
            if self.serving[slot] is not None:  # else a respawn is due for it anyway
                self.successor = self.spawn(slot, successor=True)
                return

    # ---- actions --------------------------------------------------------------------------

    def begin_stop(self, reason: str) -> None:
        log.info("fastloop: stopping (%s): workers finish their requests, for up to %gs",
                 reason, self.config.timeout_graceful_shutdown)
        self.stopping = True
        self.deadline = time.monotonic() + self.config.timeout_graceful_shutdown + SLACK
        self.pending.clear()
        self.respawn_at.clear()
        for child in list(self.children.values()):
            self.signal(child, signal.SIGTERM)
        # The workers close their copies as they stop accepting; once ours are closed too,
        # new connections are refused instead of queueing where nobody will accept them.
        self.close_listeners()

    def kill_all(self) -> None:
        self.killed = True
        for child in list(self.children.values()):
            self.signal(child, signal.SIGKILL)

    def signal(self, child: _Child, signum: int) -> None:
        if signum == signal.SIGTERM:
            if child.retiring:
                return
            child.retiring = True
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass  # already gone; reap() collects it

    def close_listeners(self) -> None:
        for sock in {id(s): s for socks in self.listeners for s in socks}.values():
            sock.close()

    def spawn(self, slot: int, successor: bool = False) -> int:
        max_requests = None
        if self.config.limit_max_requests:
            max_requests = self.config.limit_max_requests + \
                random.randint(0, self.config.limit_max_requests_jitter)
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            os.close(r)
            self._child_main(slot, w, max_requests)
        os.close(w)
        self.children[pid] = _Child(pid, slot, r)
        if not successor:
            self.serving[slot] = pid
        log.info("fastloop: worker %d started (slot %d%s)", pid, slot,
                 ", replacing a worker" if successor else "")
        return pid

    def _child_main(self, slot: int, status_fd: int, max_requests: Optional[int]) -> None:
        """The worker process: never returns."""
        status = 1
        try:
            parent = os.getppid()
            mine = {id(s) for s in self.listeners[slot]}
            # Signals first, before anything can block: the inbox of the parent is not ours.
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            for signum in (signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)
            assert self.inbox is not None
            for fd in self.inbox.fds():
                os.close(fd)
            for child in self.children.values():
                if child.pipe >= 0:
                    os.close(child.pipe)
            for sock in {id(s): s for socks in self.listeners for s in socks}.values():
                if id(sock) not in mine:
                    sock.close()
            try:
                app = self.load()
                server = Server(app, sockets=list(self.listeners[slot]),
                                **self.config.server_kwargs())
            except BaseException:
                log.exception("fastloop: worker %d could not load the application", os.getpid())
                status = BOOT_ERROR
                return
            snapshots = self.metrics.snapshots.writer(server) if self.metrics else None
            status = serve_process(server, self.config, status_fd=status_fd, parent_pid=parent,
                                   max_requests=max_requests)
            if snapshots is not None:
                snapshots.close()  # the final counts, after the last request
        except BaseException:
            log.exception("fastloop: worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            # Skip the parent's atexit handlers and finally blocks: they are not ours to run.
            os._exit(status)
