"""Shared helpers for the benchmark scripts: pinned servers, CPU accounting, wrk.

Theory of operation: a benchmark run is one server process pinned to one core
(``taskset -c SERVER_CORE``, in its own session so it and anything it forks
form one process group) and one ``wrk`` pinned to another core. The server's
CPU time is read from /proc before and after wrk runs; the difference divided
by the requests wrk completed is the server's CPU cost per request, which is
comparable across servers even when the client is the bottleneck.

Linux only (/proc, taskset). Every server started here is stopped by its PID,
SIGTERM first, SIGKILL after a timeout, whatever happens (see ``running``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

__all__ = [
    "LUA_DIR",
    "Server",
    "WrkResult",
    "as_record",
    "emit",
    "free_port",
    "group_cpu_seconds",
    "median",
    "parse_wrk",
    "process_cpu_seconds",
    "run_wrk",
    "running",
    "start_server",
    "stop_server",
]

LUA_DIR = Path(__file__).resolve().parent / "lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")  # /proc/*/stat times are in these ticks


# -- CPU accounting ---------------------------------------------------------


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if gone.

    The name is in parentheses and may itself contain spaces and ')', so split
    after the last ')'. Index 0 of the result is field 3 (state) of proc(5).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    after_name = raw.rindex(b")") + 2
    return raw[after_name:].decode().split()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of process PID in seconds, all its threads included.

    /proc/PID/stat (unlike /proc/PID/task/TID/stat) sums every thread, live or
    exited. The resolution is one clock tick (usually 10 ms).
    """
    fields = _read_stat(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15


def group_cpu_seconds(pgid: int) -> float:
    """Sum of utime + stime over the live processes of process group PGID.

    For servers that fork workers. A member that exits takes its time with it
    unless it is reaped by another member (then it shows in cutime/cstime,
    which this does not add, to avoid counting it twice).
    """
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _read_stat(int(name))
        if fields is not None and int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


# -- servers ----------------------------------------------------------------


@dataclass
class Server:
    """A started server: its Popen, port, and the file holding its output."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU time of the server's whole process group so far."""
        # start_new_session makes the server the leader: its pgid is its pid.
        return group_cpu_seconds(self.proc.pid)

    def output(self) -> str:
        """Everything the server printed (stdout and stderr) so far."""
        return self.log.read_text(errors="replace")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the kernel chose it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_server(
    name: str,
    cmd: Sequence[str],
    port: int,
    core: int = 0,
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 15.0,
) -> Server:
    """Start CMD pinned to CORE and wait until 127.0.0.1:PORT accepts.

    The command runs under ``taskset -c CORE`` (which execs it, so the PID is
    the server's own) in a new session, hence its own process group. Its
    output goes to a temporary file, not a pipe that nobody drains. Raises
    RuntimeError (after stopping it) if it exits or does not accept in time.
    """
    fd, log = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
    try:
        proc = subprocess.Popen(
            ["taskset", "-c", str(core), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    finally:
        os.close(fd)
    server = Server(name, proc, port, Path(log))
    try:
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.returncode is not None else "did not accept in time"
                raise RuntimeError(f"{name} {why}; its output:\n{server.output()}")
            time.sleep(0.05)
    except BaseException:  # including ^C: never leave it running
        stop_server(server)
        raise
    return server


def _group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _read_stat(int(name))
            if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(name))
    return members


def stop_server(server: Server, timeout: float = 5.0) -> int | None:
    """Stop SERVER by its PID: SIGTERM, then SIGKILL after TIMEOUT seconds.

    Processes the server forked into its group are then killed one by one,
    also by PID. Returns the server's exit code. Removes its log file.
    """
    proc = server.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{server.name}: no exit {timeout}s after SIGTERM, SIGKILL", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in _group_members(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.log.unlink(missing_ok=True)
    return proc.returncode


@contextlib.contextmanager
def running(name: str, cmd: Sequence[str], port: int, core: int = 0, **kw) -> Iterator[Server]:
    """``start_server`` as a context manager: the server is always stopped."""
    server = start_server(name, cmd, port, core, **kw)
    try:
        yield server
    finally:
        stop_server(server)


# -- wrk --------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_p50_us: float | None
    latency_p99_us: float | None
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _to_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unknown wrk time {text!r}")
    return float(m.group(1)) * _UNITS_US[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    """Parse the text wrk prints with ``--latency``. Raises ValueError if the
    summary line is missing (wrk failed to connect, or died)."""
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out, re.M)
    if not m:
        raise ValueError(f"no summary in wrk output:\n{out}")
    requests, seconds = int(m.group(1)), _to_us(m.group(2) + m.group(3)) / 1e6
    found = re.findall(r"^\s*(50|75|90|99)%\s+(\S+)", out, re.M)
    pct: dict[str, float | None] = {p: _to_us(t) for p, t in found}
    # wrk sometimes prints 0.00us for the upper percentiles, and here always
    # does when a script pipelines requests (wg/wrk#236, wg/wrk#354). Percentiles cannot
    # fall, so a 0 after a nonzero one is that bug: report it as unknown.
    seen = 0.0
    for p in ("50", "75", "90", "99"):
        value = pct.get(p)
        if value is not None:
            if value == 0 and seen > 0:
                pct[p] = None
            else:
                seen = max(seen, value)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    return WrkResult(
        requests=requests,
        seconds=seconds,
        rps=float(rps.group(1)) if rps else requests / seconds,
        latency_p50_us=pct.get("50"),
        latency_p99_us=pct.get("99"),
        socket_errors=(
            dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups())))
            if errors
            else {}
        ),
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
    )


def run_wrk(
    url: str,
    connections: int,
    duration: int,
    *,
    core: int = 1,
    threads: int = 1,
    script: str | Path | None = None,
    script_args: Sequence[str] = (),
) -> WrkResult:
    """Run ``taskset -c CORE wrk -tTHREADS -cCONNECTIONS -dDURATIONs --latency``.

    DURATION is in whole seconds: wrk reads "-d0.5s" as a usage error.
    SCRIPT is an optional wrk Lua script (see lua/), SCRIPT_ARGS go after
    ``--`` to its init(). Raises RuntimeError if wrk fails or hangs.
    """
    cmd = ["taskset", "-c", str(core), "wrk", f"-t{threads}", f"-c{connections}"]
    cmd += [f"-d{int(duration)}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired as e:  # run() has killed wrk by its PID
        raise RuntimeError(f"wrk hung: {' '.join(cmd)}") from e
    if res.returncode != 0:
        raise RuntimeError(f"wrk exited {res.returncode}:\n{res.stdout}{res.stderr}")
    return parse_wrk(res.stdout)


# -- reporting --------------------------------------------------------------


def emit(record: dict) -> None:
    """Print RECORD as one JSON line on stdout (the machine-readable output)."""
    print(json.dumps(record, sort_keys=True), flush=True)


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None, or None if there are none."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def as_record(result: WrkResult) -> dict:
    """WrkResult as a plain dict, for ``emit``."""
    return asdict(result)
