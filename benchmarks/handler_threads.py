"""Handlers that block beside the loop: throughput against handler threads, static latency.

A handler that sleeps 1 ms (blocking I/O, as a database call would be) is loaded on
--connections connections while a second client keeps asking the static route on 4 more;
the server runs one event loop (runtime_threads=1) and --threads handler threads (each value
of --threads in turn, A B A B over --rounds). Throughput should grow with the handler threads, and the static
route, answered in C by the loop, should keep a low p99 whatever the handlers do. One JSON
line per run, then a summary line per thread count. Asserts nothing. With --server-core and
--client-core (Linux), the server runs under taskset on one core and the load generator on
another, as the suite pins them.

    python benchmarks/handler_threads.py --threads 1 4 16 --duration 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import signal, sys, time
sys.path.insert(0, {root!r})
import fastloop
app = fastloop.App()
app.static("/", b"static")

@app.get("/sleep")
def sleep(request):
    time.sleep(0.001)
    return b"slept"

srv = fastloop.Server(app, host="127.0.0.1", port=0, threads={threads}, runtime_threads=1)
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGINT, signal.SIGTERM}})
srv.start()
print(srv.port, flush=True)
signal.sigwait({{signal.SIGINT, signal.SIGTERM}})
srv.stop(1.0)
"""


def one_run(threads: int, connections: int, duration: float, core: int | None = None) -> dict:
    sys.path.insert(0, str(ROOT))
    from fastloop import bench

    cmd = [sys.executable, "-c", SERVER.format(root=str(ROOT), threads=threads)]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]  # taskset execs: proc.pid is the server
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        results: dict = {}

        def load(name: str, path: str, conns: int) -> None:
            results[name] = bench.run(f"http://127.0.0.1:{port}{path}", connections=conns,
                                      duration=duration).to_dict()

        runs = [threading.Thread(target=load, args=("sleep", "/sleep", connections)),
                threading.Thread(target=load, args=("static", "/", 4))]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    sleep, static = results["sleep"], results["static"]
    return {"threads": threads, "server_core": core, "sleep_rps": sleep["rps"], "static_rps": static["rps"],
            "static_p99_us": static["latency_us"]["p99"], "static_p50_us": static["latency_us"]["p50"],
            "failed": sleep["failed"] + static["failed"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16], help="handler threads")
    p.add_argument("--connections", type=int, default=64, help="connections on the sleeping route")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=2, help="runs per thread count, interleaved")
    p.add_argument("--server-core", type=int, default=None, help="pin the server to this core")
    p.add_argument("--client-core", type=int, default=None,
                   help="pin the load generator (this process) to this core")
    args = p.parse_args()
    if args.client_core is not None:
        os.sched_setaffinity(0, {args.client_core})
    runs: dict = {n: [] for n in args.threads}
    for _ in range(args.rounds):
        for n in args.threads:
            r = one_run(n, args.connections, args.duration, args.server_core)
            runs[n].append(r)
            print(json.dumps(r), flush=True)
    for n, rs in runs.items():
        print(json.dumps({"summary": True, "threads": n,
                          "sleep_rps": statistics.median(r["sleep_rps"] for r in rs),
                          "static_p99_us": statistics.median(r["static_p99_us"] for r in rs)}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
