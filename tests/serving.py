"""`fastloop serve` in a child process, for tests: started, watched through its log, and
always ended by PID (its own and its workers'), whatever the test did."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from typing import List, Optional, Sequence

from helpers import env_importing_this_fastloop, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
# fastloop's line, or uvicorn's ("Uvicorn running on URL"): the reference server of
# tests/test_asgi_frameworks.py.
_LISTENING = re.compile(r"(?:listening on|thread\(s\) on|Uvicorn running on) (\S+)")
_WORKER = re.compile(r"(?:worker|server process) (\d+) started")  # killed by stop()


class ServeProcess:
    """python -m fastloop serve ARGS, run from tests/ (so serve_apps imports), its stderr
    collected line by line. start() returns once it listens and `ready_workers` workers said
    they accept; stop() ends it and every worker it logged, by PID."""

    def __init__(self, args: Sequence[str], ready_workers: int = 0, env: Optional[dict] = None,
                 pass_fds: Sequence[int] = (), command: Optional[List[str]] = None) -> None:
        self.args = list(args)
        self.ready_workers = ready_workers
        self.env = env_importing_this_fastloop()
        self.env.update(env or {})
        self.pass_fds = tuple(pass_fds)
        self.command = command or [sys.executable, "-m", "fastloop", "serve"]
        self.lines: List[str] = []
        self.url = ""
        self.proc: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return "\n".join(self.lines)

    def worker_pids(self) -> List[int]:
        return [int(m.group(1)) for line in list(self.lines) for m in [_WORKER.search(line)] if m]

    def start(self, timeout: float = 10.0) -> "ServeProcess":
        self.proc = subprocess.Popen(self.command + self.args, cwd=HERE, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     pass_fds=self.pass_fds)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not wait_until(lambda: self.url and self.log().count("is accepting") >= self.ready_workers
                          or self.proc.poll() is not None, timeout):
            raise AssertionError(f"server did not start:\n{self.log()}")
        if not self.url:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            m = _LISTENING.search(line)
            if m and not self.url:
                self.url = m.group(1)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(2.0)
        return code

    def wait_for(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        if not wait_until(lambda: self.log().count(text) >= count, timeout):
            raise AssertionError(f"{text!r} x{count} not logged:\n{self.log()}")

    def stop(self) -> None:
        """Ends the server and its workers by PID: SIGKILL whatever is still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._reader is not None:
            self._reader.join(2.0)

    def __enter__(self) -> "ServeProcess":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get(url: str, path: str = "/", timeout: float = 5.0, close: bool = True) -> bytes:
    """The body of GET url+path on a new connection (Connection: close by default)."""
    import http.client
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise AssertionError(f"{path}: {resp.status} {body!r}")
        return body
    finally:
        conn.close()


def hanging_request(port: int, outcome: list, path: str = "/slow?8") -> None:
    """GET path (slow to answer) on a new connection; appends the status, or the name of the
    error that cut the request, to outcome."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        outcome.append(conn.getresponse().status)
    except OSError as exc:
        outcome.append(type(exc).__name__)
    finally:
        conn.close()
