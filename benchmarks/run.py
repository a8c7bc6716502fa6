"""fastloop against its peers, side by side: one command.

    python -m benchmarks --install-peers --quick     # a minute or two, peers installed first
    python -m benchmarks                              # the full run; also writes docs/benchmarks.md
    python -m benchmarks --servers fastloop-static,baseline --scenarios plaintext,pipelined

Theory of operation. Every server runs pinned to --server-core (taskset, in its own session,
so everything it forks is one process group, stopped by PID); this process, which is the load
generator, pins itself to --client-core. The load generator is fastloop bench's C client loop
(fastloop.bench.run, one thread), with wrk as a cross-check of the plaintext scenario. Server
CPU time (utime + stime of its whole process group, from /proc) is read before and after each
measured run; divided by the responses received it gives the server's CPU per request, the
figure that the load generator's own core does not cap.

One round starts each server in turn (A, B, C, ... then again A, B, C, ...), checks that it
answers every endpoint it takes part with, warms it up, runs its scenarios, and stops it.
Medians over rounds are reported with their spread (min-max). The fastloop under test is a
snapshot of the checkout's fastloop/ package taken at start, so that a rebuild in place during
the run cannot change it mid-way.

Scenarios (apps.py has the endpoints):
  plaintext  GET /, keep-alive, 64 connections
  pipelined  GET /, 16 requests back to back per connection, 64 connections
  close      GET /, a new connection per request (Connection: close), 64 connections
  json       GET /json, a JSON document built by a Python handler, 64 connections
  upload     POST /upload with a 1 MiB body, 16 connections
  download   GET /download, a 1 MiB answer, 16 connections
  idle       N connections (10,000; 2,000 with --quick) that made one request each and stay
             open: server RSS after minus before, per connection
  scaling    GET /, keep-alive, 64 connections, fastloop with 1 event loop, 2 event loops, 2 processes
             (server on --server-core and --client-core: two cores, shared with the client)

ASGI (issue 13): the raw ASGI app of apps.py (the one uvicorn always ran here) under uvicorn,
granian --interface asgi, hypercorn and `fastloop serve --interface asgi` (fastloop-asgi), with
every scenario; and a FastAPI app (GET / and GET /json) under the same four (NAME-fastapi).
fastloop's two are skipped while the fastloop under test has no --interface asgi.

Outputs go to benchmarks/results/ (gitignored): results-<date>.json with every run and the
summaries, results-<date>.md with the tables, results-<date>.png when matplotlib is there (in
this interpreter or the peers' virtual environment). A full run also rewrites docs/benchmarks.md.
Asserts nothing: the targets of the issue are reported as met or missed, with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import json
import os
import platform
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as h  # noqa: E402
import peers  # noqa: E402
from baseline.build import build_baseline  # noqa: E402

RESULTS_DIR = HERE / "results"
DOCS_FILE = ROOT / "docs" / "benchmarks.md"
ONE_MIB = 1 << 20

SCENARIOS = {
    "plaintext": {"path": "/", "connections": 64},
    "pipelined": {"path": "/", "connections": 64, "pipeline": 16},
    "close": {"path": "/", "connections": 64, "keepalive": False},
    "json": {"path": "/json", "connections": 64},
    "upload": {"path": "/upload", "connections": 16, "method": "POST", "body": ONE_MIB},
    "download": {"path": "/download", "connections": 16},
    "idle": {},
    "scaling": {"path": "/", "connections": 64},
}
TITLES = {
    "plaintext": "Plaintext, keep-alive, 64 connections",
    "pipelined": "Plaintext, pipelined 16 deep, 64 connections",
    "close": "New connection per request (Connection: close), 64 connections",
    "json": "JSON from a Python handler, 64 connections",
    "upload": "1 MiB upload (POST), 16 connections",
    "download": "1 MiB download, 16 connections",
    "idle": "Idle keep-alive connections: server memory per connection",
    "scaling": "Scaling: plaintext keep-alive, 1 event loop / 2 event loops / 2 processes",
}
PLAIN = ("plaintext", "pipelined", "close")
APP = ("plaintext", "pipelined", "close", "json", "upload", "download", "idle")
FASTAPI = ("plaintext", "json")
# (raw ASGI app, FastAPI app) of each ASGI server, in the rows of the ASGI table.
ASGI_SERVERS = [("fastloop-asgi", "fastloop-fastapi"), ("uvicorn", "uvicorn-fastapi"),
                ("granian-asgi", "granian-fastapi"), ("hypercorn", "hypercorn-fastapi")]


@dataclass
class Spec:
    """One server of the suite."""

    name: str
    kind: str                    # fastloop, baseline, peer, nginx
    scenarios: tuple
    peer: str | None = None      # the install entries in peers.PEERS, joined by "+"
    mode: str | None = None      # fastloop: static, py, wsgi, asgi, fastapi
    runtime_threads: int = 1  # event loops per process
    workers: int = 1
    note: str = ""
    cores: str | None = None     # None: --server-core
    skip: str | None = None      # why it is not run


def all_specs() -> list[Spec]:
    two = "two cores, one shared with the load generator"
    return [
        Spec("fastloop-static", "fastloop", PLAIN + ("download", "idle", "scaling"),
             mode="static", note="static routes, answered in C"),
        Spec("fastloop-py", "fastloop", APP[:-1], mode="py", note="Python handlers"),
        Spec("fastloop-wsgi", "fastloop", APP[:-1] + ("scaling",), mode="wsgi",
             note="the WSGI hello app under fastloop.wsgi.WSGIApp"),
        Spec("baseline", "baseline", PLAIN + ("idle",),
             note="the minimal C epoll server (benchmarks/baseline/)"),
        Spec("granian-wsgi", "peer", APP, peer="granian", note="1 worker, WSGI"),
        Spec("granian-rsgi", "peer", APP, peer="granian", note="1 worker, RSGI"),
        Spec("uvicorn", "peer", APP, peer="uvicorn", note="ASGI, uvloop + httptools, 1 worker"),
        Spec("fastloop-asgi", "fastloop", APP, mode="asgi",
             note="the raw ASGI app under `fastloop serve --interface asgi`"),
        Spec("granian-asgi", "peer", APP, peer="granian", note="1 worker, ASGI"),
        Spec("hypercorn", "peer", APP, peer="hypercorn", note="ASGI, uvloop, 1 worker"),
        Spec("fastloop-fastapi", "fastloop", FASTAPI, mode="fastapi",
             note="the FastAPI app under `fastloop serve --interface asgi`"),
        Spec("uvicorn-fastapi", "peer", FASTAPI, peer="uvicorn+fastapi",
             note="the FastAPI app; uvloop + httptools, 1 worker"),
        Spec("granian-fastapi", "peer", FASTAPI, peer="granian+fastapi",
             note="the FastAPI app; 1 worker, ASGI"),
        Spec("hypercorn-fastapi", "peer", FASTAPI, peer="hypercorn+fastapi",
             note="the FastAPI app; uvloop, 1 worker"),
        Spec("socketify", "peer", APP, peer="socketify", note="native API"),
        Spec("bjoern", "peer", APP, peer="bjoern", note="WSGI"),
        Spec("fastpysgi", "peer", APP, peer="fastpysgi", note="WSGI, 1 worker"),
        Spec("mrhttp", "peer", APP, peer="mrhttp", note="native API, uncached route"),
        Spec("mrhttp-cached", "peer", PLAIN, peer="mrhttp", note="native API, cached route"),
        Spec("gunicorn", "peer", APP, peer="gunicorn",
             note="WSGI, 1 sync worker (no keep-alive, no pipelining)"),
        Spec("nginx", "nginx", PLAIN + ("upload", "download", "idle"),
             note="`return 200`, 1 worker process"),
        Spec("fastloop-static-2t", "fastloop", ("scaling",), mode="static", runtime_threads=2,
             note=f"2 event loops; {two}", cores="0,1"),
        Spec("fastloop-static-2p", "fastloop", ("scaling",), mode="static", workers=2,
             note=f"2 processes; {two}", cores="0,1"),
        Spec("fastloop-wsgi-2t", "fastloop", ("scaling",), mode="wsgi", runtime_threads=2,
             note=f"2 event loops; {two}", cores="0,1"),
        Spec("fastloop-wsgi-2p", "fastloop", ("scaling",), mode="wsgi", workers=2,
             note=f"2 processes; {two}", cores="0,1"),
    ]


# -- the fastloop under test -------------------------------------------------------------------

def snapshot_fastloop(dest: Path, attempts: int = 10) -> None:
    """Copy the checkout's fastloop/ (sources and built extension) to DEST/fastloop and check
    that it imports; retried while a rebuild in place is under way."""
    ignore = shutil.ignore_patterns("__pycache__", "*.c", "*.html", "*.o")
    last = ""
    for _ in range(attempts):
        target = dest / "fastloop"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "fastloop", target, ignore=ignore)
        res = subprocess.run([sys.executable, "-c", "import fastloop, fastloop.bench, "
                              "fastloop.wsgi; print(fastloop.__version__)"],
                             capture_output=True, text=True, cwd=dest,
                             env={**os.environ, "PYTHONPATH": str(dest)})
        if res.returncode == 0:
            return
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        time.sleep(3)
    raise RuntimeError(f"fastloop does not import (a build under way?): {last}")


# -- measuring ---------------------------------------------------------------------------------

def group_rss_kib(pgid: int) -> int:
    """Sum of VmRSS (KiB) over the live processes of process group PGID."""
    total = 0
    for pid in h._group_members(pgid):
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
    return total


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def hold_idle(port: int, n: int, deadline_s: float = 15.0, batch: int = 500) -> tuple:
    """Open N connections to 127.0.0.1:PORT, one keep-alive GET / on each, answers read; return
    (sockets, errors). Batches of BATCH, so that no listen backlog overflows."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    socks: list[socket.socket] = []
    errors: dict[str, int] = {}
    sel = selectors.DefaultSelector()
    end = time.monotonic() + deadline_s
    try:
        while len(socks) < n and time.monotonic() < end:
            pending = {}
            for _ in range(min(batch, n - len(socks))):
                s = socket.socket()
                s.setblocking(False)
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, errno.EINPROGRESS):
                    errors[errno.errorcode.get(rc, str(rc))] = errors.get(
                        errno.errorcode.get(rc, str(rc)), 0) + 1
                    s.close()
                    continue
                pending[s] = b""
                sel.register(s, selectors.EVENT_WRITE)
            sent: set = set()
            while pending and time.monotonic() < end:
                for key, ev in sel.select(timeout=0.5):
                    s = key.fileobj
                    if s not in sent:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            name = errno.errorcode.get(err, str(err))
                            errors[name] = errors.get(name, 0) + 1
                            sel.unregister(s)
                            s.close()
                            del pending[s]
                            continue
                        try:
                            s.send(request)
                        except OSError:
                            continue
                        sent.add(s)
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        data, name = b"", errno.errorcode.get(e.errno, "OSError")
                        errors[name] = errors.get(name, 0) + 1
                    got = pending[s] + data
                    if not data or b"\r\n\r\n" in got:
                        sel.unregister(s)
                        del pending[s]
                        if data:
                            socks.append(s)
                        else:
                            errors["EOF"] = errors.get("EOF", 0) + 1
                            s.close()
                    else:
                        pending[s] = got
            for s in pending:
                sel.unregister(s)
                s.close()
            if pending:
                errors["timeout"] = errors.get("timeout", 0) + len(pending)
            if not socks or not still_open(socks[-batch:]):
                break  # the server closed the whole batch: it does not hold idle connections
    finally:
        sel.close()
    return socks, errors


def still_open(socks: list) -> int:
    n = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                continue  # the server closed it
        except BlockingIOError:
            pass
        except OSError:
            continue
        n += 1
    return n


def run_idle(srv: h.Server, n: int) -> dict:
    time.sleep(0.3)
    before = group_rss_kib(srv.pid)
    t0 = time.monotonic()
    socks, errors = hold_idle(srv.port, n, deadline_s=min(15.0, 5 + n / 500))
    took = time.monotonic() - t0
    time.sleep(0.3)
    after = group_rss_kib(srv.pid)
    held = still_open(socks)
    for s in socks:
        s.close()
    rec = {"connections": n, "held": held, "rss_before_kib": before, "rss_after_kib": after,
           "open_s": round(took, 2), "errors": errors}
    rec["bytes_per_conn"] = round((after - before) * 1024 / held, 1) if held else None
    return rec


def run_load(bench, srv: h.Server, scenario: str, duration: float) -> dict:
    sc = SCENARIOS[scenario]
    body = b"y" * sc["body"] if sc.get("body") else None
    headers = {"Content-Type": "application/octet-stream"} if body else None
    url = f"http://127.0.0.1:{srv.port}{sc['path']}"
    cpu0 = srv.cpu_seconds()
    r = bench.run(url, connections=sc["connections"], threads=1, duration=duration,
                  method=sc.get("method", "GET"), body=body, headers=headers,
                  keepalive=sc.get("keepalive", True), pipeline=sc.get("pipeline", 1),
                  timeout=max(0.5, min(2.0, duration / 2)))  # a late answer is a failure
    cpu = srv.cpu_seconds() - cpu0
    lat = r.latency_us()
    non2xx = sum(v for k, v in r.status.items() if not 200 <= int(k) < 300)
    return {"requests": r.requests, "rps": round(r.rps, 1), "seconds": round(r.duration_s, 3),
            "failed": r.failed, "unfinished": r.unfinished, "non_2xx": non2xx, "errors": dict(r.errors),
            "p50_us": lat["p50"], "p99_us": lat["p99"],
            "mib_per_s": round(max(r.bytes_in, r.bytes_out) / r.duration_s / ONE_MIB, 1)
            if r.duration_s else None,
            "closed_by_server": r.connections.get("closed_by_peer"),
            "server_cpu_s": round(cpu, 3),
            "cpu_us_per_req": round(cpu * 1e6 / r.requests, 3) if r.requests else None}


def run_wrk_check(srv: h.Server, duration: float, core: int) -> dict:
    url = f"http://127.0.0.1:{srv.port}/"
    cpu0 = srv.cpu_seconds()
    r = h.run_wrk(url, 64, max(1, round(duration)), core=core, threads=1)
    cpu = srv.cpu_seconds() - cpu0
    return {"requests": r.requests, "rps": round(r.rps, 1), "seconds": r.seconds,
            "failed": sum(r.socket_errors.values()), "non_2xx": r.non_2xx_3xx,
            "errors": r.socket_errors, "p50_us": r.latency_p50_us, "p99_us": r.latency_p99_us,
            "server_cpu_s": round(cpu, 3),
            "cpu_us_per_req": round(cpu * 1e6 / r.requests, 3) if r.requests else None}


def asgi_unservable(snapshot: Path, mode: str) -> str | None:
    """Why the fastloop in SNAPSHOT cannot serve the app of MODE (asgi, fastapi), or None."""
    code = ("from fastloop.config import INTERFACES\n"
            "print('asgi' in INTERFACES)\n"
            "import importlib.util\n"
            "print(importlib.util.find_spec('fastapi') is not None)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(snapshot)}, cwd=HERE)
    if res.returncode != 0:
        return f"fastloop does not import: {res.stderr.strip().splitlines()[-1:]}"
    asgi, fastapi = res.stdout.split()
    if asgi != "True":
        return "this fastloop does not serve ASGI yet (no --interface asgi)"
    if mode == "fastapi" and fastapi != "True":
        return f"FastAPI is not installed for {sys.executable}"
    return None


# -- starting servers --------------------------------------------------------------------------

def check_endpoints(port: int, scenarios: tuple) -> dict:
    """{scenario: why it cannot run} for endpoints that do not answer as apps.py says."""
    import http.client

    wanted = {"plaintext": ("GET", "/", None, 13), "json": ("GET", "/json", None, None),
              "upload": ("POST", "/upload", b"y" * ONE_MIB, None),
              "download": ("GET", "/download", None, ONE_MIB)}
    broken = {}
    for scenario, (method, path, body, length) in wanted.items():
        if scenario not in scenarios and not (scenario == "plaintext" and set(scenarios) & {
                "pipelined", "close", "idle", "scaling"}):
            continue
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            why = None
            if resp.status != 200:
                why = f"{method} {path} answered {resp.status}"
            elif length is not None and len(data) != length:
                why = f"{method} {path} answered {len(data)} bytes, not {length}"
            elif scenario == "upload" and data.strip() not in (b"1048576", b"ok"):
                why = f"POST /upload answered {data[:40]!r}"
        except (OSError, http.client.HTTPException) as e:
            why = f"{method} {path}: {e!r}"
        if why:
            broken[scenario] = why
    if "plaintext" in broken:
        for s in ("pipelined", "close", "idle", "scaling"):
            broken[s] = broken["plaintext"]
    return broken


def start(spec: Spec, args, tmp: Path) -> h.Server:
    port = h.free_port()
    core = spec.cores or str(args.server_core)
    env = dict(os.environ)
    cwd = HERE
    if spec.kind == "fastloop" and spec.mode in ("asgi", "fastapi"):
        env["PYTHONPATH"] = str(tmp / "snapshot")
        # As users serve an ASGI app, and as uvicorn is run in peers.py (no lifespan, no log).
        app = "apps:fastapi_app" if spec.mode == "fastapi" else "apps:asgi_app"
        cmd = [sys.executable, "-m", "fastloop", "serve", app, "--interface", "asgi",
               "--lifespan", "off", "--host", "127.0.0.1", "--port", str(port),
               "--runtime-threads", str(spec.runtime_threads), "--workers", str(spec.workers),
               "--log-level", "warning", "--backlog", "4096"]
    elif spec.kind == "fastloop":
        env["PYTHONPATH"] = str(tmp / "snapshot")
        cmd = [sys.executable, str(HERE / "fastloop_suite_server.py"), spec.mode, str(port),
               "--runtime-threads", str(spec.runtime_threads), "--workers",
               str(spec.workers)]
    elif spec.kind == "baseline":
        cmd = [str(build_baseline()), str(port)]
    elif spec.kind == "nginx":
        cmd = peers.nginx_command(port, tmp / f"nginx-{port}", args.nofile)
    else:
        env.pop("PYTHONPATH", None)
        cmd = peers.peer_command(spec.name, port, args.venv)
    return h.start_server(spec.name, cmd, port, core, env=env, cwd=cwd, timeout=30)


# -- summarizing -------------------------------------------------------------------------------

def spread(values: list) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(records: list[dict]) -> dict:
    """{server: {scenario: {loadgen: {metric: spread}}}}."""
    out: dict = {}
    keys = {(r["server"], r["scenario"], r.get("loadgen", "")) for r in records if "error" not in r}
    for server, scenario, loadgen in sorted(keys):
        runs = [r for r in records if (r["server"], r["scenario"], r.get("loadgen", "")) ==
                (server, scenario, loadgen) and "error" not in r]
        metrics = ("bytes_per_conn", "held", "rss_before_kib", "rss_after_kib") if \
            scenario == "idle" else ("rps", "cpu_us_per_req", "p50_us", "p99_us", "mib_per_s")
        s = {m: spread([r.get(m) for r in runs]) for m in metrics}
        if scenario != "idle":
            s["errors"] = sum(r.get("failed", 0) + r.get("non_2xx", 0) for r in runs)
        out.setdefault(server, {}).setdefault(scenario, {})[loadgen] = s
    return out


def med(summary: dict, server: str, scenario: str, metric: str, loadgen: str = "bench"):
    lg = "" if scenario == "idle" else loadgen
    s = summary.get(server, {}).get(scenario, {}).get(lg, {}).get(metric)
    return s["median"] if s else None


def fmt_spread(s: dict | None, spec: str = ",.0f") -> str:
    if not s:
        return "n/a"
    if s["n"] == 1 or s["min"] == s["max"]:
        return format(s["median"], spec)
    return f"{format(s['median'], spec)} ({format(s['min'], spec)}–{format(s['max'], spec)})"


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def scenario_table(summary: dict, scenario: str, order: list[str]) -> list[str]:
    if scenario == "idle":
        lines = ["| server | bytes per connection | connections held | RSS before → after (KiB) |",
                 "| --- | ---: | ---: | ---: |"]
        for server in order:
            s = summary.get(server, {}).get("idle", {}).get("")
            if s:
                lines.append(f"| {server} | {fmt_spread(s['bytes_per_conn'])} | "
                             f"{fmt_spread(s['held'])} | {fmt_spread(s['rss_before_kib'])} → "
                             f"{fmt_spread(s['rss_after_kib'])} |")
        return lines
    mib = scenario in ("upload", "download")
    head = "| server | requests/s | MiB/s |" if mib else "| server | requests/s |"
    lines = [head + " server CPU µs/request | p99 latency µs | errors | rps ÷ baseline "
             "| CPU ÷ baseline |",
             "| --- | ---: |" + (" ---: |" if mib else "") + " ---: | ---: | ---: | ---: | ---: |"]
    base_rps = med(summary, "baseline", scenario, "rps")
    base_cpu = med(summary, "baseline", scenario, "cpu_us_per_req")
    for server in order:
        s = summary.get(server, {}).get(scenario, {}).get("bench")
        if not s:
            continue
        row = f"| {server} | {fmt_spread(s['rps'])} |"
        if mib:
            row += f" {fmt_spread(s['mib_per_s'], ',.0f')} |"
        row += (f" {fmt_spread(s['cpu_us_per_req'], '.2f')} | {fmt_spread(s['p99_us'], ',.0f')} |"
                f" {s['errors']} | {fmt_ratio(ratio(med(summary, server, scenario, 'rps'), base_rps))}"
                f" | {fmt_ratio(ratio(med(summary, server, scenario, 'cpu_us_per_req'), base_cpu))} |")
        lines.append(row)
    return lines


def wrk_table(summary: dict, order: list[str]) -> list[str]:
    lines = ["| server | fastloop bench rps | wrk rps | bench ÷ wrk | server CPU µs/req (bench / wrk) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for server in order:
        w = summary.get(server, {}).get("plaintext", {}).get("wrk")
        if not w:
            continue
        b_rps = med(summary, server, "plaintext", "rps")
        w_rps = med(summary, server, "plaintext", "rps", "wrk")
        b_cpu = med(summary, server, "plaintext", "cpu_us_per_req")
        w_cpu = med(summary, server, "plaintext", "cpu_us_per_req", "wrk")
        lines.append(f"| {server} | {fmt_spread(summary[server]['plaintext']['bench']['rps'])} | "
                     f"{fmt_spread(w['rps'])} | {fmt_ratio(ratio(b_rps, w_rps))} | "
                     f"{b_cpu if b_cpu is None else f'{b_cpu:.2f}'} / "
                     f"{w_cpu if w_cpu is None else f'{w_cpu:.2f}'} |")
    return lines


def headline_table(summary: dict, order: list[str]) -> list[str]:
    cols = [("plaintext", "rps"), ("pipelined", "rps"), ("close", "rps"), ("json", "rps"),
            ("plaintext", "cpu_us_per_req")]
    lines = ["| server | plaintext req/s | pipelined req/s | new conn. req/s | JSON req/s | "
             "CPU µs/req (plaintext) | CPU ÷ C baseline | memory / idle conn. |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base_cpu = med(summary, "baseline", "plaintext", "cpu_us_per_req")
    for server in order:
        if server not in summary or "plaintext" not in summary[server]:
            continue
        cells = []
        for scenario, metric in cols:
            v = med(summary, server, scenario, metric)
            cells.append("–" if v is None else (f"{v:,.0f}" if metric == "rps" else f"{v:.2f}"))
        cpu = med(summary, server, "plaintext", "cpu_us_per_req")
        mem = med(summary, server, "idle", "bytes_per_conn")
        cells.append(fmt_ratio(ratio(cpu, base_cpu)))
        cells.append("–" if mem is None else f"{mem:,.0f} B")
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return lines


def asgi_table(summary: dict) -> list[str]:
    """One row per ASGI server: the raw app's rates and CPU, the FastAPI app's, and both beside
    uvicorn's (the ratios of issue 13's targets)."""
    lines = ["| server | hello req/s | pipelined req/s | CPU µs/req (hello) | CPU ÷ uvicorn | "
             "FastAPI JSON req/s | FastAPI CPU µs/req | FastAPI req/s ÷ uvicorn | "
             "memory / idle conn. |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    cpu_u = med(summary, "uvicorn", "plaintext", "cpu_us_per_req")
    json_u = med(summary, "uvicorn-fastapi", "json", "rps")
    for raw, fast in ASGI_SERVERS:
        if raw not in summary and fast not in summary:
            continue
        cpu = med(summary, raw, "plaintext", "cpu_us_per_req")
        fj = med(summary, fast, "json", "rps")
        fc = med(summary, fast, "json", "cpu_us_per_req")
        mem = med(summary, raw, "idle", "bytes_per_conn")
        hello, piped = med(summary, raw, "plaintext", "rps"), med(summary, raw, "pipelined", "rps")
        lines.append(f"| {raw} / {fast.rsplit('-', 1)[1]} | {_n(hello)} | {_n(piped)} | {_n(cpu, '.2f')} | "
                     f"{fmt_ratio(ratio(cpu, cpu_u))} | {_n(fj)} | {_n(fc, '.2f')} | "
                     f"{fmt_ratio(ratio(fj, json_u))} | {'–' if mem is None else f'{mem:,.0f} B'} |")
    return lines


def versus_table(summary: dict, order: list[str]) -> list[str]:
    """fastloop's median rate divided by each other server's, per scenario."""
    pairs = [("fastloop-static", "plaintext"), ("fastloop-static", "pipelined"),
             ("fastloop-static", "close"), ("fastloop-py", "plaintext"),
             ("fastloop-py", "pipelined"), ("fastloop-py", "json"), ("fastloop-wsgi", "json"),
             ("fastloop-py", "upload"), ("fastloop-py", "download")]
    lines = ["| vs | " + " | ".join(f"{f.split('-', 1)[1]} {s}" for f, s in pairs) + " |",
             "| --- |" + " ---: |" * len(pairs)]
    for server in order:
        if server.startswith("fastloop") or server not in summary:
            continue
        cells = [fmt_ratio(ratio(med(summary, f, s, "rps"), med(summary, server, s, "rps")))
                 for f, s in pairs]
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return lines


def _n(x, spec=",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def targets(summary: dict) -> list[dict]:
    def t(name, value, limit, ok, figures):
        return {"target": name, "value": value, "limit": limit,
                "status": "n/a" if ok is None else ("met" if ok else "missed"), "figures": figures}

    out = []
    cpu_s = med(summary, "fastloop-static", "plaintext", "cpu_us_per_req")
    cpu_b = med(summary, "baseline", "plaintext", "cpu_us_per_req")
    r = ratio(cpu_s, cpu_b)
    out.append(t("Static route: server CPU per request within 5% of the C baseline (keep-alive)",
                 r, "≤ 1.05×", None if r is None else r <= 1.05,
                 f"{_n(cpu_s, '.2f')} vs {_n(cpu_b, '.2f')} µs/request"))
    ps, pb = med(summary, "fastloop-static", "pipelined", "rps"), med(summary, "baseline", "pipelined", "rps")
    r = ratio(ps, pb)
    out.append(t("Static route: pipelined at ≥ 90% of the C baseline's rate", r, "≥ 0.90×",
                 None if r is None else r >= 0.90, f"{_n(ps)} vs {_n(pb)} requests/s"))
    cp = med(summary, "fastloop-py", "plaintext", "cpu_us_per_req")
    r = ratio(cp, cpu_b)
    out.append(t("Python handler: server CPU per request ≤ 1.4× the C baseline (keep-alive)", r,
                 "≤ 1.40×", None if r is None else r <= 1.4,
                 f"{_n(cp, '.2f')} vs {_n(cpu_b, '.2f')} µs/request"))
    pp, pso = med(summary, "fastloop-py", "pipelined", "rps"), med(summary, "socketify", "pipelined", "rps")
    r = ratio(pp, pso)
    out.append(t("Python handler: pipelined ≥ 3× socketify's rate", r, "≥ 3.00×",
                 None if r is None else r >= 3.0, f"{_n(pp)} vs {_n(pso)} requests/s"))
    cs, cb = med(summary, "fastloop-static", "close", "rps"), med(summary, "baseline", "close", "rps")
    errs = summary.get("fastloop-static", {}).get("close", {}).get("bench", {}).get("errors")
    r = ratio(cs, cb)
    out.append(t("New connection per request: ≥ the C baseline's rate, zero errors", r, "≥ 1.00×, 0 errors",
                 None if r is None else (r >= 1.0 and errs == 0),
                 f"{_n(cs)} vs {_n(cb)} requests/s; {errs} errors"))
    mem = med(summary, "fastloop-static", "idle", "bytes_per_conn")
    held = med(summary, "fastloop-static", "idle", "held")
    out.append(t("Idle connections: ≤ 1 KiB each", mem, "≤ 1024 bytes",
                 None if mem is None else mem <= 1024,
                 f"{_n(mem)} bytes/connection, {_n(held)} connections held"))
    out += asgi_targets(summary)
    rs_all = [ratio(med(summary, s, "plaintext", "rps"), med(summary, s, "plaintext", "rps", "wrk"))
              for s in ("fastloop-static", "baseline")]
    rs = [x for x in rs_all if x is not None]
    r = min(rs) if rs else None
    out.append(t("fastloop bench drives at least wrk's rate from one core (plaintext, against "
                 "fastloop-static and the baseline; the lower ratio)", r, "≥ 1.00×",
                 None if r is None else r >= 1.0,
                 ", ".join(f"{s}: {fmt_ratio(x)}" for s, x in zip(("fastloop-static", "baseline"), rs_all))))
    return out


def asgi_targets(summary: dict) -> list[dict]:
    """Issue 13's performance targets (the raw ASGI app, the FastAPI app, idle connections)."""
    def t(name, value, limit, ok, figures):
        return {"target": name, "value": value, "limit": limit,
                "status": "n/a" if ok is None else ("met" if ok else "missed"), "figures": figures}

    cpu_f = med(summary, "fastloop-asgi", "plaintext", "cpu_us_per_req")
    out = []
    for peer, limit, ok in (("uvicorn", "≤ 0.50×", lambda r: r <= 0.5),
                            ("granian-asgi", "< 1.00×", lambda r: r < 1.0)):
        cpu_p = med(summary, peer, "plaintext", "cpu_us_per_req")
        r = ratio(cpu_f, cpu_p)
        out.append(t(f"ASGI hello app: server CPU per request vs {peer} (keep-alive)", r, limit,
                     None if r is None else ok(r),
                     f"{_n(cpu_f, '.2f')} vs {_n(cpu_p, '.2f')} µs/request"))
    pf = med(summary, "fastloop-asgi", "pipelined", "rps")
    pg = med(summary, "granian-asgi", "pipelined", "rps")
    r = ratio(pf, pg)
    out.append(t("ASGI hello app: pipelined ≥ 3× granian-asgi's rate", r, "≥ 3.00×",
                 None if r is None else r >= 3.0, f"{_n(pf)} vs {_n(pg)} requests/s"))
    jf = med(summary, "fastloop-fastapi", "json", "rps")
    ju = med(summary, "uvicorn-fastapi", "json", "rps")
    r = ratio(jf, ju)
    out.append(t("FastAPI JSON endpoint: requests/s ≥ 1.5× uvicorn's", r, "≥ 1.50×",
                 None if r is None else r >= 1.5, f"{_n(jf)} vs {_n(ju)} requests/s"))
    mem = med(summary, "fastloop-asgi", "idle", "bytes_per_conn")
    held = med(summary, "fastloop-asgi", "idle", "held")
    out.append(t("ASGI idle connections: ≤ 2 KiB each", mem, "≤ 2048 bytes",
                 None if mem is None else mem <= 2048,
                 f"{_n(mem)} bytes/connection, {_n(held)} connections held"))
    return out


def targets_table(ts: list[dict]) -> list[str]:
    lines = ["| target | measured | limit | status | figures (medians) |",
             "| --- | ---: | --- | --- | --- |"]
    for t in ts:
        v = t["value"]
        shown = "n/a" if v is None else (f"{v:,.0f} B" if "KiB" in t["target"] else f"{v:.3f}×")
        lines.append(f"| {t['target']} | {shown} | {t['limit']} | **{t['status']}** | {t['figures']} |")
    return lines


# -- environment -------------------------------------------------------------------------------

def machine_info(args) -> dict:
    def out(cmd):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (res.stdout + res.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    cpu = None
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", str(ROOT), "status", "--porcelain", "--", "fastloop"])
    vers = peers.versions(args.venv)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "fastloop_commit": commit + (" (+ uncommitted changes in fastloop/)" if dirty else "")
        if commit else None,
        "nginx": out(["nginx", "-v"]) if shutil.which("nginx") else None,
        "wrk": (out(["wrk", "-v"]) or "").split(" Copyright")[0] or None
        if shutil.which("wrk") else None,
        "peers": {k: vers.get(k) for k in ("granian", "uvicorn", "uvloop", "httptools",
                                           "socketify", "bjoern", "fastpysgi", "mrhttp",
                                           "gunicorn", "hypercorn", "fastapi", "starlette")},
        "server_core": args.server_core, "client_core": args.client_core,
    }


def markdown(data: dict) -> str:
    summary, order, m = data["summary"], data["order"], data["machine"]
    lines = [f"Mode: {data['mode']} — {data['rounds']} round(s), {data['duration_s']} s per "
             f"measured run, {data['idle_connections']:,} idle connections; medians, with the "
             "spread (min–max) over rounds in parentheses.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
             f"Python {m['python']}; fastloop {m['fastloop_commit']}; {m['date']}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in m["peers"].items() if v) +
             (f"; {m['nginx']}" if m["nginx"] else "") + (f"; {m['wrk']}" if m["wrk"] else ""), "",
             "## Headline", "", *headline_table(summary, order), "",
             "## Targets", "", *targets_table(data["targets"]), ""]
    for scenario in SCENARIOS:
        if any(scenario in summary.get(s, {}) for s in order):
            lines += [f"## {TITLES[scenario]}", "", *scenario_table(summary, scenario, order), ""]
    if any(name in summary for pair in ASGI_SERVERS for name in pair):
        lines += ["## ASGI: the raw ASGI app and a FastAPI app under each ASGI server", "",
                  *asgi_table(summary), ""]
    lines += ["## fastloop ÷ peer (requests/s)", "", *versus_table(summary, order), ""]
    if any("wrk" in summary.get(s, {}).get("plaintext", {}) for s in order):
        lines += ["## Cross-check: fastloop bench vs wrk (plaintext keep-alive, 64 connections, "
                  "one core)", "", *wrk_table(summary, order), ""]
    lines += ["## Servers", "", "| server | what | status |", "| --- | --- | --- |"]
    for s in data["servers"]:
        lines.append(f"| {s['name']} | {s['note']} | {s['skip'] or 'run'} |")
    problems = [r for r in data["records"] if "error" in r]
    if problems:
        lines += ["", "## Runs that failed", ""]
        for r in problems:  # the first line only, and no machine paths
            err = r["error"].split("; server output")[0].splitlines()[0].replace(f"{ROOT}/", "")
            lines.append(f"- {r['server']} / {r['scenario']} (round {r['round']}): {err[:300]}"
                         " (its output is in the JSON file)")
    return "\n".join(lines) + "\n"


def chart(data: dict, png: Path, venv: Path) -> str | None:
    """Draw the PNG with matplotlib, here or in the peers' venv; return a note if not."""
    code = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
summary, order = data["summary"], data["order"]
scen = [s for s in ("plaintext", "pipelined", "close", "json") if any(s in summary.get(x, {}) for x in order)]
fig, axes = plt.subplots(len(scen), 1, figsize=(10, 3.2 * len(scen)), squeeze=False)
for ax, s in zip(axes[:, 0], scen):
    names, vals, lo, hi = [], [], [], []
    for x in order:
        r = summary.get(x, {}).get(s, {}).get("bench", {}).get("rps")
        if r:
            names.append(x)
            vals.append(r["median"])
            lo.append(r["median"] - r["min"])
            hi.append(r["max"] - r["median"])
    colors = ["#d62728" if n.startswith("fastloop") else "#7f7f7f" if n in ("baseline", "nginx")
              else "#1f77b4" for n in names]
    ax.barh(names, vals, xerr=[lo, hi], color=colors)
    ax.invert_yaxis(); ax.set_title(s + " (requests/s, median, min-max)"); ax.tick_params(labelsize=8)
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110)
"""
    src = png.with_suffix(".json")
    for py in (sys.executable, str(peers.python(venv))):
        if not Path(py).exists():
            continue
        res = subprocess.run([py, "-c", code, str(src), str(png)], capture_output=True, text=True,
                             timeout=120)
        if res.returncode == 0:
            return None
    return "no PNG chart: matplotlib is not installed (--install-peers adds it to the venv)"


def docs_page(data: dict, md_text: str) -> str:
    return (
        "# Benchmarks\n\n"
        "The latest full run of `python -m benchmarks` (benchmarks/run.py): fastloop beside the C "
        "epoll baseline (benchmarks/baseline/), its Python peers and nginx, on the same machine, "
        "the server pinned to one core and the load generator (fastloop bench; wrk as a "
        "cross-check) to the other. Server CPU per request is the CPU time (user + system) of "
        "the server's whole process group during the run divided by the responses received, "
        "so it is not capped by the load generator's core. Servers take turns (A, B, C, ... "
        "repeated); figures are medians with the spread over rounds. Rerun it with:\n\n"
        "```\npython -m benchmarks --install-peers   # once: installs the peers, then runs\n"
        "python -m benchmarks                   # full run, rewrites this page\n"
        "python -m benchmarks --quick           # a minute or two\n```\n\n"
        "Read the figures with their caveats: loopback only, so the kernel's TCP stack is a "
        "large share of every request; one worker each; a two-core machine, so the scaling "
        "runs share a core with the load generator; gunicorn's sync worker closes every "
        "connection (keep-alive and pipelining do not apply to it); socketify, mrhttp and "
        "granian-rsgi use their own native APIs, the others WSGI or ASGI; nginx preallocates its "
        "connection table, so its memory per idle connection is near zero by construction. "
        "The machine is a two-core virtual machine that other work may share: absolute rates "
        "move between runs (see the spreads), the CPU time per request moves much less.\n\n"
        + md_text)


# -- main --------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true", help="1 round, 1 s runs, 2,000 idle connections")
    p.add_argument("--install-peers", action="store_true",
                   help="create benchmarks/.venv and pip-install the peers there first")
    p.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, help="seconds per measured run (default 3; 1 with --quick)")
    p.add_argument("--idle-connections", type=int, help="default 10000; 2000 with --quick")
    p.add_argument("--servers", help="comma-separated names (default: all)")
    p.add_argument("--scenarios", help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check")
    p.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                   help="rewrite docs/benchmarks.md (default: on for a full run of everything, "
                        "off when it installs the peers first)")
    p.add_argument("--venv", type=Path, default=peers.DEFAULT_VENV, help="the peers' virtualenv")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    p.add_argument("--list", action="store_true", help="list the servers and scenarios, then exit")
    p.add_argument("--report", type=Path, metavar="RESULTS.json",
                   help="only write the tables (and, with --docs, docs/benchmarks.md) again from "
                        "a saved results file, with this version's summaries")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (1.0 if args.quick else 3.0)
    args.idle_connections = args.idle_connections or (2000 if args.quick else 10000)
    args.scenario_list = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    for s in args.scenario_list:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    return args


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        data = json.loads(args.report.read_text())
        data["summary"] = summarize(data["records"])
        data["targets"] = targets(data["summary"])
        args.report.write_text(json.dumps(data, indent=1, default=str))
        return write_outputs(data, args, args.report.with_suffix(""), bool(args.docs))
    specs = all_specs()
    if args.list:
        for s in specs:
            print(f"{s.name:20} {', '.join(s.scenarios)}  -- {s.note}")
        return 0
    if args.servers:
        names = args.servers.split(",")
        unknown = set(names) - {s.name for s in specs}
        if unknown:
            log(f"unknown servers: {', '.join(sorted(unknown))}")
            return 2
        specs = [s for s in specs if s.name in names]
    if shutil.which("taskset") is None:
        log("taskset not found (util-linux)")
        return 2
    if args.install_peers:
        wanted = {p for s in specs if s.peer for p in s.peer.split("+")}
        peers.install(args.venv, log=log, only=None if not args.servers else wanted)
    status = peers.status(args.venv)
    for s in specs:
        s.scenarios = tuple(x for x in s.scenarios if x in args.scenario_list)
        missing = [p for p in (s.peer or "").split("+") if p and not status.get(p, {}).get("installed")]
        if not s.scenarios:
            s.skip = "no selected scenario"
        elif s.kind == "peer" and missing:
            s.skip = f"not installed: {status.get(missing[0], {}).get('why')}"
        elif s.kind == "nginx" and shutil.which("nginx") is None:
            s.skip = "nginx is not installed"
    wrk = shutil.which("wrk") is not None and not args.no_wrk
    wrk_servers = {s.name for s in specs} if not args.quick else {"fastloop-static", "baseline"}

    args.nofile = raise_nofile()
    if args.nofile < args.idle_connections + 100:
        log(f"ulimit -n is {args.nofile}: idle connections lowered to fit")
        args.idle_connections = max(100, args.nofile - 200)
    os.sched_setaffinity(0, {args.client_core})  # this process is the load generator

    tmp = Path(tempfile.mkdtemp(prefix="fastloop-bench-"))
    tmp.chmod(0o755)  # nginx's worker may run as another user and serves a file from here
    records: list[dict] = []
    started = time.monotonic()
    try:
        snapshot_fastloop(tmp / "snapshot")
        for s in specs:
            if s.kind == "fastloop" and s.mode in ("asgi", "fastapi") and not s.skip:
                s.skip = asgi_unservable(tmp / "snapshot", s.mode)
        sys.path.insert(0, str(tmp / "snapshot"))
        from fastloop import bench  # noqa: E402  (the snapshot)
        if any(s.kind == "baseline" and not s.skip for s in specs):
            build_baseline()
        run_specs = [s for s in specs if not s.skip]
        for s in specs:
            if s.skip:
                log(f"skip {s.name}: {s.skip}")
        for rnd in range(1, args.rounds + 1):
            for spec in run_specs:  # A B C ... A B C ...: alternate, never batch
                records += run_server(spec, rnd, args, tmp, bench, wrk and spec.name in wrk_servers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(records)
    order = [s.name for s in all_specs()]
    data = {
        "mode": "quick" if args.quick else "full", "rounds": args.rounds,
        "duration_s": args.duration, "idle_connections": args.idle_connections,
        "machine": machine_info(args), "order": order,
        "servers": [{"name": s.name, "note": s.note, "skip": s.skip} for s in specs],
        "records": records, "summary": summary, "targets": targets(summary),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = args.out / f"results-{data['mode']}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    # A run that installed the peers first is a setup run, not the quiet one the page should
    # show: it rewrites docs/benchmarks.md only when asked to (--docs).
    whole = not args.quick and not args.servers and not args.scenarios and not args.install_peers
    log(f"{len(records)} runs in {data['elapsed_s']:.0f} s")
    return write_outputs(data, args, base, args.docs or (args.docs is None and whole))


def write_outputs(data: dict, args, base: Path, docs: bool) -> int:
    """The Markdown tables and the chart beside BASE.json; docs/benchmarks.md if DOCS."""
    md_text = markdown(data)
    note = chart(data, base.with_suffix(".png"), args.venv)
    if note:
        md_text += f"\n{note}\n"
    base.with_suffix(".md").write_text(md_text)
    if docs:
        DOCS_FILE.parent.mkdir(exist_ok=True)
        DOCS_FILE.write_text(docs_page(data, md_text))
        log(f"wrote {DOCS_FILE.relative_to(ROOT)}")
    print(md_text)
    log(f"results: {base.relative_to(ROOT) if base.is_relative_to(ROOT) else base}.{{json,md"
        f"{'' if note else ',png'}}}")
    return 0


def run_server(spec: Spec, rnd: int, args, tmp: Path, bench, with_wrk: bool) -> list[dict]:
    """One round of one server: start, check, warm up, its scenarios, stop."""
    def record(scenario, loadgen="bench", **kw):
        return {"server": spec.name, "scenario": scenario, "round": rnd, "loadgen": loadgen, **kw}

    out = []
    try:
        srv = start(spec, args, tmp)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log(f"{spec.name}: start failed: {e}")
        return [record(s, error=f"start failed: {str(e)[-500:]}") for s in spec.scenarios]
    try:
        broken = check_endpoints(srv.port, spec.scenarios)
        with contextlib.suppress(Exception):  # warm-up, unmeasured
            if "plaintext" not in broken:
                bench.run(f"http://127.0.0.1:{srv.port}/", connections=64, duration=0.3, timeout=2)
        for scenario in spec.scenarios:
            if srv.proc.poll() is not None:  # it died in the last scenario: a fresh one
                h.stop_server(srv)
                try:
                    srv = start(spec, args, tmp)
                except (RuntimeError, OSError) as e:
                    out.append(record(scenario, error=f"restart failed: {str(e)[-300:]}"))
                    break
            if scenario in broken:
                out.append(record(scenario, error=f"endpoint check: {broken[scenario]}"))
                log(f"{spec.name} {scenario}: {broken[scenario]}")
                continue
            try:
                if scenario == "idle":
                    rec = record(scenario, loadgen="", **run_idle(srv, args.idle_connections))
                    log(f"r{rnd} {spec.name:18} idle       {rec['bytes_per_conn']} B/conn, "
                        f"{rec['held']} held, {rec['open_s']} s")
                else:
                    rec = record(scenario, **run_load(bench, srv, scenario, args.duration))
                    log(f"r{rnd} {spec.name:18} {scenario:10} {rec['rps']:>12,.0f} rps "
                        f"{rec['cpu_us_per_req'] or 0:8.2f} µs/req  errors {rec['failed'] + rec['non_2xx']}")
                out.append(rec)
                if scenario == "plaintext" and with_wrk:
                    w = record(scenario, loadgen="wrk", **run_wrk_check(srv, args.duration, args.client_core))
                    log(f"r{rnd} {spec.name:18} {'(wrk)':10} {w['rps']:>12,.0f} rps "
                        f"{w['cpu_us_per_req'] or 0:8.2f} µs/req")
                    out.append(w)
                if srv.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {srv.proc.returncode}")
            except Exception as e:  # a failed run is reported, the suite goes on
                out.append(record(scenario, error=f"{type(e).__name__}: {e}"[:800] +
                                  (f"; server output: {srv.output()[-400:]}" if srv.proc.poll()
                                   is not None else "")))
                log(f"{spec.name} {scenario}: {e}")
    finally:
        h.stop_server(srv)
    return out


if __name__ == "__main__":
    sys.exit(main())
