"""Graceful stop (SIGTERM) and SIGHUP under keep-alive load: what keep-alive clients see.

A keep-alive load (`fastloop bench`, in process) runs on --connections connections against a
Python route, and a second one on a static route; after --before seconds the server gets the
signal. With --signal term the server is one process (fastloop.Server) and stops; with
--signal hup it is `fastloop serve -w 2` and replaces its workers, and the load goes on for
--after seconds more. Then the load ends cleanly (bench.run(until=...): every request under
way answered or failed), and the client's books are set against the server's count of
answers (stats() after the stop; the supervisor's --metrics after SIGHUP).

One JSON line per run: answers on both sides, and every request the clients wrote that got
no answer ("sent_unanswered"), with the errors by kind: EOF / ECONNRESET on a connection the
server closed while a request was on its way (the keep-alive race of RFC 9112 9.6), and
ECONNREFUSED for connections tried after the listener closed (no request written). Asserts
nothing.

    python benchmarks/graceful_keepalive.py --signal term --runs 5
    python benchmarks/graceful_keepalive.py --signal hup --runs 5
    python benchmarks/graceful_keepalive.py --signal term --rate 3200 --runs 5  # sparse clients
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP = """
import fastloop
app = fastloop.App()
app.static("/", b"static")

@app.get("/py")
def py(request):
    return b"py"
"""

ONE_PROCESS = """
import json, sys
sys.path[:0] = [{root!r}, {appdir!r}]
import fastloop
from graceful_app import app
srv = fastloop.Server(app, host="127.0.0.1", port=0, threads=2)
srv.start()
print(srv.port, flush=True)
srv.serve_started()  # until SIGTERM, then a graceful stop
print(json.dumps({{k: v for k, v in srv.stats().items() if k != "workers"}}), flush=True)
"""


def _env(appdir: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), appdir, env.get("PYTHONPATH"))
                                        if p)
    return env


def _wait_for(path: Path, pattern: str, count: int, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(re.finditer(pattern, path.read_text(errors="replace")))
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.05)
    raise RuntimeError(f"{pattern!r} x{count} not seen in {path}:\n{path.read_text()}")


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"{name} not in {url}")


def one_run(how: str, connections: int, before: float, after: float, appdir: str,
            rate: float | None = None) -> dict:
    sys.path.insert(0, str(ROOT))
    from fastloop import bench

    log = Path(appdir) / f"server-{how}.log"
    with open(log, "wb") as err:
        if how == "term":
            cmd = [sys.executable, "-c", ONE_PROCESS.format(root=str(ROOT), appdir=appdir)]
        else:
            cmd = [sys.executable, "-m", "fastloop", "serve", "graceful_app:app", "--port", "0",
                   "-w", "2", "--metrics", "--metrics-port", "0"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=_env(appdir), cwd=appdir)
    results: dict = {}
    done = threading.Event()
    loads = []
    try:
        if how == "term":
            port = int(proc.stdout.readline())
        else:
            port = int(_wait_for(log, r"thread\(s\) on http://127\.0\.0\.1:(\d+)/", 1, 20).group(1))
            metrics = _wait_for(log, r"metrics on (\S+)", 1, 20).group(1)
            _wait_for(log, "is accepting", 2, 20)

        def load(name: str, path: str, conns: int) -> None:
            results[name] = bench.run(f"http://127.0.0.1:{port}{path}", connections=conns,
                                      duration=120.0, timeout=5.0, until=done,
                                      rate=rate * conns / connections if rate else None)

        loads = [threading.Thread(target=load, args=("python", "/py", connections)),
                 threading.Thread(target=load, args=("static", "/", max(1, connections // 4)))]
        for t in loads:
            t.start()
        time.sleep(before)
        t_signal = time.monotonic()
        if how == "term":
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            took = time.monotonic() - t_signal
            server = json.loads(proc.stdout.read())["requests"]
        else:
            proc.send_signal(signal.SIGHUP)
            _wait_for(log, "is accepting", 4, 30)  # both successors serve
            took = time.monotonic() - t_signal
            time.sleep(after)
        done.set()
        for t in loads:
            t.join(30)
        if how == "hup":
            time.sleep(1.2)  # two snapshot intervals: every worker's last count is in
            server = int(_metric(metrics, "fastloop_requests_total"))
    finally:
        done.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for t in loads:
            t.join(30)
    errors: dict = {}
    for r in results.values():
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    return {
        "signal": how, "connections": connections, "rate": rate,
        "client_answered": sum(r.requests for r in results.values()),
        "server_answered": server,
        "sent_unanswered": sum(r.sent_unanswered for r in results.values()),
        "non_200": sum(n for r in results.values() for s, n in r.status.items() if s != 200),
        "errors": errors, "signal_to_done_s": round(took, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--signal", choices=["term", "hup"], default="term")
    ap.add_argument("--connections", type=int, default=32, help="on the Python route")
    ap.add_argument("--before", type=float, default=1.0, help="seconds of load before the signal")
    ap.add_argument("--after", type=float, default=0.5, help="hup: seconds of load after it")
    ap.add_argument("--rate", type=float, default=None,
                    help="requests/s over the Python route's connections (the static one's in "
                         "proportion): keep-alive connections idle between requests")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as appdir:
        Path(appdir, "graceful_app.py").write_text(APP)
        for _ in range(args.runs):
            print(json.dumps(one_run(args.signal, args.connections, args.before, args.after,
                                     appdir, args.rate)), flush=True)


if __name__ == "__main__":
    main()
