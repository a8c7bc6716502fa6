"""--reload: for development, restart the server process when a source file changes.

Theory of operation. The reloader binds the listening socket once, never imports the
application, and forks a server process that imports it and serves (run_until_signal, linked
like a supervised worker: it stops when the reloader is gone, and says R when accepting).
Connections that arrive during a restart wait in the socket's backlog. Every TICK the
reloader asks its watcher what changed: watchfiles' when it can be imported (it stays
optional), else a poll of modification times. A change of a file that counts (matched by
--reload-include, default *.py, and by no --reload-exclude) under a --reload-dir (default:
the current directory) sends SIGTERM to the server process, waits for it, and forks a new
one. A server process that fails (say, a syntax error) is reported; the next change starts
another. SIGHUP restarts it at once; SIGTERM/SIGINT stop, and a second SIGINT forces, as
everywhere (fastloop.process).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from .process import TICK, SignalInbox, WorkerLink, fork_linked

__all__ = ["Reloader", "FileFilter", "PollWatcher", "make_watcher"]

log = logging.getLogger("fastloop")

DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", "*.py[cod]", "*~", "__pycache__")
STOP_WAIT = 10.0        # a server process still running this long after SIGTERM gets SIGKILL


class FileFilter:
    """Which paths count: a file whose name or path (relative to its watched directory)
    matches an include glob and no exclude glob, in no excluded directory."""

    def __init__(self, dirs: List[str], include: List[str], exclude: List[str]) -> None:
        self.dirs = [os.path.abspath(d) for d in dirs]
        self.include = list(DEFAULT_INCLUDE) + include
        self.exclude = [p for p in DEFAULT_EXCLUDE if p not in include] + exclude

    def _matches(self, patterns: List[str], name: str, relative: str) -> bool:
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(relative, p) for p in patterns)

    def skip_dir(self, name: str, relative: str) -> bool:
        return self._matches(self.exclude, name, relative)

    def __call__(self, path: str) -> bool:
        path = os.path.abspath(path)
        base = next((d for d in self.dirs if path.startswith(d + os.sep)), None)
        if base is None:
            return False
        relative = os.path.relpath(path, base)
        parts = relative.split(os.sep)
        for i, part in enumerate(parts[:-1]):
            if self.skip_dir(part, os.sep.join(parts[:i + 1])):
                return False
        return self._matches(self.include, parts[-1], relative) and \
            not self._matches(self.exclude, parts[-1], relative)


class PollWatcher:
    """changed() compares every counted file's modification time with the previous call."""

    name = "polling"

    def __init__(self, counts: FileFilter) -> None:
        self.counts = counts
        self.seen = self._scan()

    def _files(self) -> Iterator[str]:
        for top in self.counts.dirs:
            for folder, subdirs, files in os.walk(top):
                here = os.path.relpath(folder, top)
                subdirs[:] = [d for d in subdirs
                              if not self.counts.skip_dir(d, os.path.normpath(os.path.join(here, d)))]
                for name in files:
                    path = os.path.join(folder, name)
                    if self.counts(path):
                        yield path

    def _scan(self) -> Dict[str, int]:
        found = {}
        for path in self._files():
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:  # removed while we looked
                pass
        return found

    def changed(self) -> List[str]:
        now = self._scan()
        paths = {p for p in set(now) | set(self.seen) if now.get(p) != self.seen.get(p)}
        self.seen = now
        return sorted(paths)


class WatchfilesWatcher:
    """changed() from watchfiles' notifications; waits up to TICK for them."""

    name = "watchfiles"

    def __init__(self, counts: FileFilter, watchfiles: Any) -> None:
        self._changes = watchfiles.watch(
            *counts.dirs, watch_filter=lambda change, path: counts(path), debounce=200,
            rust_timeout=int(TICK * 1000), yield_on_timeout=True, raise_interrupt=False)

    def changed(self) -> List[str]:
        return sorted({path for _, path in next(self._changes, set())})


def make_watcher(counts: FileFilter) -> Any:
    """A WatchfilesWatcher when watchfiles is importable, else a PollWatcher."""
    try:
        import watchfiles  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return PollWatcher(counts)
    return WatchfilesWatcher(counts, watchfiles)


class Reloader:
    """Runs serve_child() in a forked server process, again after each change. serve_child,
    called in the child with its WorkerLink, returns its exit status. run() returns the
    reloader's: 0, or 1 after a forced stop."""

    def __init__(self, serve_child: Callable[[WorkerLink], int], dirs: List[str],
                 include: List[str], exclude: List[str], grace: float) -> None:
        self.serve_child = serve_child
        self.counts = FileFilter(dirs or [os.getcwd()], include, exclude)
        self.grace = grace
        self.child: Optional[int] = None
        self.pipe = -1
        self.status = 0
        self.inbox: Optional[SignalInbox] = None

    def run(self) -> int:
        signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        with SignalInbox(signums) as inbox:
            self.inbox = inbox
            watcher = make_watcher(self.counts)
            log.info("fastloop: reload: watching %s for changes (%s)",
                     ", ".join(self.counts.dirs), watcher.name)
            self.spawn()
            while True:
                signals, readable = inbox.wait(0 if watcher.name == "watchfiles" else TICK,
                                               [self.pipe] if self.pipe >= 0 else [])
                if readable:
                    self._drain()
                stop = [s for s in signals if s in (signal.SIGTERM, signal.SIGINT)]
                if stop:
                    return self.stop(stop[0])
                self.reap()
                changed = watcher.changed()
                if changed or signal.SIGHUP in signals:
                    what = ", ".join(os.path.relpath(p) for p in changed[:3]) or "SIGHUP"
                    log.info("fastloop: reload: %s%s: restarting the server process", what,
                             f" and {len(changed) - 3} more" if len(changed) > 3 else "")
                    self.end_child(signal.SIGTERM)
                    self.spawn()

    def spawn(self) -> None:
        assert self.inbox is not None
        self.child, self.pipe = fork_linked(self.inbox, self.serve_child, "server process")
        log.info("fastloop: reload: server process %d started", self.child)

    def _drain(self) -> None:
        try:
            data = os.read(self.pipe, 256)
        except OSError:
            data = b""
        if not data:
            os.close(self.pipe)
            self.pipe = -1

    def reap(self) -> Optional[int]:
        """The child's exit code if it has exited (and is now collected), else None."""
        if self.child is None:
            return None
        pid, wstatus = os.waitpid(self.child, os.WNOHANG)
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(wstatus)
        self.child = None
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1
        if code != 0:
            log.error("fastloop: reload: the server process exited with status %d; waiting "
                      "for a change", code)
        return code

    def end_child(self, signum: int) -> Optional[int]:
        """Sends signum to the server process and waits for it (SIGKILL after grace +
        STOP_WAIT); returns its exit code, None if none was running."""
        if self.child is None:
            return None
        assert self.inbox is not None
        os.kill(self.child, signum)
        deadline = time.monotonic() + self.grace + STOP_WAIT
        forced = False
        while True:
            code = self.reap()
            if code is not None or self.child is None:
                return code
            signals, _ = self.inbox.wait(TICK)
            if signal.SIGINT in signals and not forced:  # a second Ctrl-C: force, as everywhere
                forced = True
                self.status = 1
                os.kill(self.child, signal.SIGINT)
                deadline = min(deadline, time.monotonic() + 2.0)
            if time.monotonic() > deadline:
                os.kill(self.child, signal.SIGKILL)
                deadline = float("inf")

    def stop(self, signum: int) -> int:
        log.info("fastloop: reload: stopping (%s)", signal.Signals(signum).name)
        code = self.end_child(signal.SIGTERM)
        return max(self.status, 1 if code not in (None, 0) else 0)
