"""Two or more fastloop checkouts side by side: the same hello server from each, A B A B.

A change to the hand-over between the event loop and the handler threads is judged against
the checkout before it (or against an older execution model) on the same machine, in one run,
so that drift of the machine hits both alike. Each run starts TREE/benchmarks/
fastloop_hello_server.py of one checkout (its own fastloop, built in place) pinned to
--server-core, loads it with this checkout's `fastloop bench` from this process, pinned to
--client-core, and prints one JSON line: requests/s, server CPU time per request (user +
system of its process group, from /proc), context switches per request (of all its threads)
and the latency percentiles. Then one summary line
per checkout with the medians, and each checkout's ratio to the first one.

Asserts nothing: the numbers are for reading. Linux only (taskset, /proc).

    python benchmarks/ab_trees.py --tree before=/tmp/before --tree after=. --server-args=--python
    python benchmarks/ab_trees.py --tree inline=/tmp/old-src --tree now=. --server-args=--python \\
        --connections 1 --duration 3     # `fastloop bench -c 1` latency
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import _harness as h

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of process PID so far: each
    hand-over that puts a thread to sleep and wakes another shows here, and the kernel time it
    costs does not show in callgrind's counts."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches:" in line:  # voluntary_... and nonvoluntary_...
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
    return total


def one_run(label: str, tree: Path, args: argparse.Namespace, bench) -> dict:
    port = h.free_port()
    cmd = [sys.executable, str(tree / "benchmarks" / "fastloop_hello_server.py"), str(port),
           *shlex.split(args.server_args)]
    rec: dict = {"bench": "ab_trees", "tree": label, "connections": args.connections,
                 "pipeline": args.pipeline, "server_args": args.server_args}
    with h.running(label, cmd, port, args.server_core, cwd=tree) as srv:
        url = f"http://127.0.0.1:{port}{args.path}"
        bench.run(url, connections=args.connections, duration=0.3, pipeline=args.pipeline)  # warm
        cpu0, cs0 = srv.cpu_seconds(), context_switches(srv.pid)
        r = bench.run(url, connections=args.connections, duration=args.duration,
                      pipeline=args.pipeline, timeout=2.0)
        cpu, cs = srv.cpu_seconds() - cpu0, context_switches(srv.pid) - cs0
    lat = r.latency_us()
    rec.update({"requests": r.requests, "rps": round(r.rps, 1), "failed": r.failed,
                "cpu_us_per_req": round(cpu * 1e6 / r.requests, 3) if r.requests else None,
                "cs_per_req": round(cs / r.requests, 3) if r.requests else None,
                "p50_us": lat["p50"], "p99_us": lat["p99"]})
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--tree", action="append", required=True, metavar="LABEL=DIR",
                   help="a checkout with fastloop built in place (repeat; the first is the base)")
    p.add_argument("--server-args", default="",
                   help="for fastloop_hello_server.py, e.g. --python (default: the static route)")
    p.add_argument("--path", default="/", help="what to ask for (default /; /json with --fastapi)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    args = p.parse_args(argv)
    trees = []
    for item in args.tree:
        label, sep, path = item.partition("=")
        if not sep or not (Path(path) / "benchmarks" / "fastloop_hello_server.py").is_file():
            p.error(f"--tree {item!r}: LABEL=DIR, DIR a fastloop checkout")
        trees.append((label, Path(path).resolve()))
    os.sched_setaffinity(0, {args.client_core})  # this process is the load generator
    sys.path.insert(0, str(ROOT))
    from fastloop import bench  # this checkout's load generator, whatever the tree under test

    records = []
    t0 = time.monotonic()
    for _ in range(args.rounds):
        for label, tree in trees:  # A B A B: alternate, never batch
            rec = one_run(label, tree, args, bench)
            h.emit(rec)
            records.append(rec)
    base = None
    for label, _ in trees:
        mine = [r for r in records if r["tree"] == label]
        summary = {"bench": "ab_trees", "summary": label, "runs": len(mine)}
        for key in ("rps", "cpu_us_per_req", "cs_per_req", "p50_us", "p99_us"):
            summary[key] = h.median([r[key] for r in mine])
            summary[key + "_runs"] = [r[key] for r in mine]
        if base is None:
            base = summary
        else:
            for key in ("rps", "cpu_us_per_req", "cs_per_req", "p50_us"):
                if summary[key] and base[key]:
                    summary[key + "_vs_" + trees[0][0]] = round(summary[key] / base[key], 3)
        print(json.dumps(summary), flush=True)
    print(f"{len(records)} runs in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
