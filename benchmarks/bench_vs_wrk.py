"""fastloop bench against wrk: the request rate each drives from one core.

The same fastloop static server (benchmarks/fastloop_hello_server.py) is pinned to
--server-core; `wrk -t1` and `fastloop bench -t1` take turns on --client-core with the same
connections and duration, --rounds times each, in two scenarios:

  keepalive  one request at a time on each connection
  close      a new connection per request (wrk: lua/close.lua; bench: --no-keepalive)

Prints one JSON line per run, then one summary line per scenario with the median requests/s
of each and the ratio bench/wrk (the issue asks for >= 1). Asserts nothing. Linux only.

    python benchmarks/bench_vs_wrk.py --connections 50 --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _harness as h

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = ("keepalive", "close")


def run_bench(url: str, scenario: str, args: argparse.Namespace) -> dict:
    cmd = ["taskset", "-c", str(args.client_core), sys.executable, "-m", "fastloop", "bench",
           "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--json", url]
    if scenario == "close":
        cmd.insert(-1, "--no-keepalive")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60,
                         cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"bench exited {res.returncode}: {res.stderr}")
    data = json.loads(res.stdout)
    return {"rps": data["rps"], "requests": data["requests"], "failed": data["failed"],
            "p50_us": data["latency_us"]["p50"], "p99_us": data["latency_us"]["p99"],
            "established": data["connections"]["established"], "errors": data["errors"]}


def run_wrk(url: str, scenario: str, args: argparse.Namespace) -> dict:
    script = h.LUA_DIR / "close.lua" if scenario == "close" else None
    r = h.run_wrk(url, args.connections, args.duration, core=args.client_core, script=script)
    return {"rps": r.rps, "requests": r.requests, "p50_us": r.latency_p50_us,
            "p99_us": r.latency_p99_us, "errors": r.socket_errors}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=int, default=5, help="whole seconds (wrk's unit)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1, help="server event loops (runtime_threads)")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("bench_vs_wrk: wrk is not installed", file=sys.stderr)
        return 2
    port = h.free_port()
    server_cmd = [sys.executable, str(HERE / "fastloop_hello_server.py"), str(port),
                  "--runtime-threads", str(args.workers)]
    url = f"http://127.0.0.1:{port}/"
    results: dict = {}
    with h.running("fastloop", server_cmd, port, core=args.server_core):
        for scenario in args.scenarios.split(","):
            for rnd in range(args.rounds):
                for client, fn in (("wrk", run_wrk), ("bench", run_bench)):
                    rec = fn(url, scenario, args)
                    rec.update(client=client, scenario=scenario, round=rnd,
                               connections=args.connections, duration=args.duration)
                    h.emit(rec)
                    results.setdefault((scenario, client), []).append(rec["rps"])
                    if scenario == "close":
                        time.sleep(1)  # let TIME_WAIT from the last run drain a little
    for scenario in args.scenarios.split(","):
        wrk = h.median(results[(scenario, "wrk")])
        mine = h.median(results[(scenario, "bench")])
        h.emit({"summary": scenario, "wrk_rps": wrk, "bench_rps": mine,
                "ratio_bench_over_wrk": round(mine / wrk, 3) if wrk else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
