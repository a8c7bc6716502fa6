"""The supervisor: pre-forked worker processes, kept running, replaced, and stopped.

Theory of operation.

The supervisor is handed every listening socket, bound before it forks (fastloop.listen), and
keeps its copies open for as long as it runs. A worker process is given the sockets of its
*slot* (see listen.listeners_for). Because the supervisor's copies keep each socket open, a
worker that exits loses no connection still queued on its sockets: they wait there for the
worker that takes the slot over. That is what lets a worker be replaced, for SIGHUP or
--limit-max-requests, without refusing a connection.

A worker imports the application after the fork (unless --preload imported it here first),
so each new worker runs the code on disk at its start: SIGHUP deploys. The worker runs
fastloop.process.run_until_signal and talks to the supervisor through one pipe each, one byte
per message (R accepting, M at its request limit, H heartbeat; see fastloop.process).
A replacement (SIGHUP: every slot, one by one; M: that slot) forks the successor first and
sends SIGTERM to the old worker only once the successor said R, so capacity never drops.
With --timeout-worker, a worker that has been accepting and then sends nothing for that long
is hung: it gets SIGTERM, SIGKILL HUNG_KILL_WAIT seconds later, and its slot a new worker.

Signals. SIGTERM or SIGINT stops gracefully (SIGTERM to every worker, SIGKILL to those still
alive after timeout_graceful_shutdown + SLACK); a second SIGINT forces the stop: the workers
get SIGINT, which makes each close its connections at once (as a single server process does),
and SIGKILL if they linger FORCE_WAIT + SLACK_FORCED seconds; the exit status is then 1.
SIGHUP replaces the workers.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import signal
import time
from typing import Callable, Deque, Dict, List, Optional

from .app import App
from .config import Config
from .listen import Listeners
from .metrics import SupervisorMetrics
from .process import FORCE_WAIT, TICK, SignalInbox, WorkerLink, fork_linked, serve_worker

__all__ = ["Supervisor", "BOOT_ERROR"]

log = logging.getLogger("fastloop")

BOOT_ERROR = 3          # a worker's exit status when it could not load the app (gunicorn's too)
SLACK = 5.0             # beyond the graceful timeout, for the worker's own clean-up
SLACK_FORCED = 1.0      # beyond FORCE_WAIT after a second SIGINT, before SIGKILL
READY_TIMEOUT = 60.0    # a successor that is not accepting after this is given up
HUNG_KILL_WAIT = 2.0    # a hung worker sent SIGTERM gets SIGKILL this much later


class _Child:
    __slots__ = ("pid", "slot", "pipe", "started", "ready", "retiring", "seen", "kill_at")

    def __init__(self, pid: int, slot: int, pipe: int) -> None:
        self.pid = pid
        self.slot = slot
        self.pipe = pipe        # read end of its status pipe; -1 once at EOF and closed
        self.started = time.monotonic()
        self.ready = False
        self.retiring = False   # sent SIGTERM
        self.seen = self.started  # when it last wrote to its pipe
        self.kill_at: Optional[float] = None  # when SIGKILL follows a SIGTERM for hanging


class Supervisor:
    """Runs config.workers pre-forked worker processes, each serving `load()` (called in the
    worker, after fork) on the sockets of its slot, and keeps them running until a signal
    stops it. run() returns the exit status: 0 after a graceful stop, 1 after a forced one or
    when the first workers cannot load the app."""

    def __init__(self, load: Callable[[], App], config: Config, listeners: Listeners) -> None:
        self.load = load
        self.config = config
        self.listeners = listeners
        self.slots = len(listeners.sets)
        self.children: Dict[int, _Child] = {}
        self.serving: List[Optional[int]] = [None] * self.slots        # slot -> pid
        self.pending: Deque[int] = collections.deque()     # slots waiting to be replaced
        self.successor: Optional[int] = None                # pid booting to take a slot over
        self.respawn_at: Dict[int, float] = {}              # slot -> when to fork again
        self.failures = [0] * self.slots                    # quick deaths in a row, per slot
        self.hung = 0                                       # workers killed for hanging
        self.ever_ready = False
        self.stopping = False
        self.killed = False
        self.deadline = 0.0
        self.status = 0
        self.inbox: Optional[SignalInbox] = None
        self.metrics: Optional[SupervisorMetrics] = None   # --metrics: see fastloop.metrics

    def run(self) -> int:
        signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        if self.listeners.metrics is not None:
            self.metrics = SupervisorMetrics(self, self.listeners.metrics)
            log.info("fastloop: metrics on %s", self.metrics.url)
        try:
            with SignalInbox(signums) as inbox:
                self.inbox = inbox
                log.info("fastloop: supervisor %d: %d workers x %d event loop(s) and %d "
                         "handler thread(s) on %s", os.getpid(), self.slots,
                         self.config.runtime_threads, self.config.threads, self.listeners.url)
                for slot in range(self.slots):
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
                    self.watch_hung()
        finally:
            for child in list(self.children.values()):  # only if run() itself failed
                self.signal(child, signal.SIGKILL)
            self.listeners.close()
            if self.metrics is not None:
                self.metrics.close()
        log.info("fastloop: supervisor %d stopped", os.getpid())
        return self.status

    # ---- events ---------------------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reap() runs on every turn
        if signum == signal.SIGHUP:
            if not self.stopping:
                log.info("fastloop: SIGHUP: replacing the workers one by one")
                self.pending = collections.deque(range(self.slots))
            return
        if self.stopping:
            if signum == signal.SIGINT and not self.killed and self.status == 0:
                log.warning("fastloop: second SIGINT: the workers close every connection now")
                self.status = 1
                self.deadline = min(self.deadline, time.monotonic() + FORCE_WAIT + SLACK_FORCED)
                for child in list(self.children.values()):
                    self.signal(child, signal.SIGINT)
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
        child.seen = time.monotonic()
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

    def watch_hung(self) -> None:
        """--timeout-worker: SIGTERM to an accepting worker silent for that long, SIGKILL to
        one that outlives HUNG_KILL_WAIT after it; reap() then replaces it."""
        limit = self.config.timeout_worker
        if not limit:
            return
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.kill_at is not None:
                if now >= child.kill_at:
                    child.kill_at = float("inf")
                    self.signal(child, signal.SIGKILL)
            elif child.ready and child.pipe >= 0 and now - child.seen > limit:
                self.hung += 1
                log.error("fastloop: worker %d (slot %d) showed no sign of life for %.1fs: "
                          "killing it (%d hung worker(s) killed so far)", child.pid, child.slot,
                          now - child.seen, self.hung)
                child.kill_at = now + HUNG_KILL_WAIT
                child.retiring = False  # SIGTERM again, even if it was sent one: it did not stop
                self.signal(child, signal.SIGTERM)

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
        self.listeners.close()

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

    def spawn(self, slot: int, successor: bool = False) -> int:
        max_requests = None
        if self.config.limit_max_requests:
            max_requests = self.config.limit_max_requests + \
                random.randint(0, self.config.limit_max_requests_jitter)
        assert self.inbox is not None
        pid, r = fork_linked(self.inbox, lambda link: self._worker_body(slot, link), "worker",
                             max_requests)
        self.children[pid] = _Child(pid, slot, r)
        if not successor:
            self.serving[slot] = pid
        log.info("fastloop: worker %d started (slot %d%s)", pid, slot,
                 ", replacing a worker" if successor else "")
        return pid

    def _worker_body(self, slot: int, link: WorkerLink) -> int:
        """In the worker process, after fork: drops what belongs to the supervisor and the
        other slots, then serves (fastloop.process.serve_worker)."""
        mine = self.listeners.sets[slot]
        for child in self.children.values():
            if child.pipe >= 0:
                os.close(child.pipe)
        for sock in self.listeners.all():
            if all(sock is not m for m in mine):
                sock.close()
        snapshots = self.metrics.snapshots if self.metrics is not None else None
        return serve_worker(self.load, list(mine), self.config, link, BOOT_ERROR, snapshots)
