"""The seed question, reproduced: a load test that breaks a naive edge-triggered server.

A deliberately naive edge-triggered server (tests/helpers.py NaiveETServer: one accept() per
listener event) and fastloop each take the same `fastloop bench --no-keepalive` load; then one
fresh client tries to get an answer. The naive server falls behind (a burst of connects is one
edge, so connections rot in its backlog) and the fresh client goes unanswered; fastloop answers
every connection, and bench's established count equals the server's accepted count.

Prints one JSON line per server; asserts nothing.

    python benchmarks/seed_repro.py --connections 50 --duration 2
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the naive reference server lives with the tests

import fastloop  # noqa: E402
from fastloop import bench  # noqa: E402
from helpers import NaiveETServer  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: seed\r\nConnection: close\r\n\r\n"


def fresh_client(port: int, timeout: float) -> bool:
    """True if one new client gets a complete 200 within timeout seconds."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(REQUEST)
            data = b""
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one(name: str, args: argparse.Namespace) -> dict:
    if name == "naive":
        server = NaiveETServer(backlog=args.backlog).start()
        accepted = lambda: server.accepted  # noqa: E731
    else:
        app = fastloop.App()
        app.static("/", b"Hello")
        server = fastloop.Server(app, host="127.0.0.1", port=0, runtime_threads=args.workers,
                                 backlog=args.backlog)
        server.start()
        accepted = lambda: server.stats()["accepted"]  # noqa: E731
    try:
        r = bench.run(f"http://127.0.0.1:{server.port}/", connections=args.connections,
                      threads=args.threads, duration=args.duration, keepalive=False,
                      timeout=args.timeout, connect_timeout=args.timeout)
        time.sleep(0.2)  # let the server count the last connections
        server_accepted = accepted()  # before the fresh client adds one
        answered_after = fresh_client(server.port, args.timeout)
        return {
            "server": name, "requests": r.requests, "failed": r.failed, "rps": round(r.rps),
            "bench_attempted": r.connections["attempted"],
            "bench_established": r.connections["established"],
            "server_accepted": server_accepted,
            # established by the kernel but never accepted: what rots in a naive backlog
            "never_accepted": r.connections["established"] - server_accepted,
            "errors": r.errors, "fresh_client_answered": answered_after,
            "time_wait": r.time_wait,
        }
    finally:
        server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="bench client threads")
    p.add_argument("--workers", type=int, default=1, help="fastloop event loops (runtime_threads)")
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--backlog", type=int, default=2048)
    args = p.parse_args()
    for name in ("naive", "fastloop"):
        print(json.dumps(one(name, args), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
