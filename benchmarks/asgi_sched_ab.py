"""ASGI under SCHED_BATCH or not: the same fastloop, A B A B, requests/s and server CPU.

fastloop runs an ASGI application's asyncio thread and its event loops under SCHED_BATCH
(docs/asgi.md, "How it runs"): a hand-over between them no longer preempts the running thread
when they share a core. This measures what that changes, with the only difference between A
and B being fastloop_hello_server.py's --no-batch: each round starts the server with the
default (batch) and then without, pinned to --server-core as `python -m benchmarks` pins it,
and loads it with fastloop bench's C client from this process (pinned to --client-core).

    python benchmarks/asgi_sched_ab.py                       # FastAPI GET /json, keep-alive
    python benchmarks/asgi_sched_ab.py --app hello --pipeline 16

One JSON line per run (rps, server CPU µs per request, context switches per request of the
whole server process), then a median per variant. Asserts nothing. Linux only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import _harness as h

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fastloop.bench as bench  # noqa: E402


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of PID so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except OSError:
            continue
        for key in ("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"):
            total += int(status.split(key)[1].split()[0])
    return total


def one_run(variant: str, args: argparse.Namespace) -> dict:
    port = h.free_port()
    flags = ["--fastapi" if args.app == "fastapi" else "--asgi"]
    if variant == "no-batch":
        flags.append("--no-batch")
    cmd = [sys.executable, str(HERE / "fastloop_hello_server.py"), str(port), *flags]
    path = "/json" if args.app == "fastapi" else "/"
    url = f"http://127.0.0.1:{port}{path}"
    with h.running(variant, cmd, port, args.server_core, cwd=HERE) as srv:
        bench.run(url, connections=args.connections, threads=1, duration=0.5,
                  pipeline=args.pipeline)  # warm-up
        cpu0, cs0 = h.group_cpu_seconds(srv.pid), context_switches(srv.pid)
        r = bench.run(url, connections=args.connections, threads=1, duration=args.duration,
                      pipeline=args.pipeline)
        cpu, cs = h.group_cpu_seconds(srv.pid) - cpu0, context_switches(srv.pid) - cs0
    n = r.requests
    return {"bench": "asgi_sched_ab", "variant": variant, "app": args.app,
            "pipeline": args.pipeline, "connections": args.connections, "requests": n,
            "failed": r.failed, "rps": round(r.rps, 1),
            "cpu_us_per_req": round(cpu * 1e6 / n, 2) if n else None,
            "switches_per_req": round(cs / n, 3) if n else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--app", choices=("fastapi", "hello"), default="fastapi")
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {args.client_core})
    runs: dict[str, list[dict]] = {"batch": [], "no-batch": []}
    for _ in range(args.rounds):
        for variant in runs:
            record = one_run(variant, args)
            h.emit(record)
            runs[variant].append(record)
    for variant, records in runs.items():
        print(f"{variant:9s} median rps {h.median([r['rps'] for r in records])}  "
              f"CPU µs/req {h.median([r['cpu_us_per_req'] for r in records])}  "
              f"switches/req {h.median([r['switches_per_req'] for r in records])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
