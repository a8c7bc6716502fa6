"""The floor under any server of apps.py's FastAPI app: its GET /json with no server at all.

The application is called in-process, N times, with a minimal http scope (the fields asgiref
requires, and the two header fields fastloop bench sends), a receive() that returns one
http.request and a send() that keeps the messages. No socket, no parsing, no framing: what is
left is what FastAPI (Starlette, pydantic, the JSON encoder) and the event loop cost per
request, which a server can only add to. Rate on one core ~= 1 / CPU per request, so if
1.5 x this floor exceeds another server's whole CPU per request, no server can serve 1.5 x
that server's rate.

Two ways of driving each request, on asyncio's loop and on uvloop's:
  await     one coroutine awaits the application N times in a row (no task per request:
            the lowest a server could go)
  task      each request is an asyncio.Task, as uvicorn (and most servers) run them

Prints one machine-readable line per (loop, mode): µs of CPU (process_time) per request,
the median of --rounds runs. Asserts nothing.

    python benchmarks/fastapi_floor.py --requests 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apps import build_fastapi_app  # noqa: E402

REQUEST = {"type": "http.request", "body": b"", "more_body": False}


def make_scope() -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/json",
        "raw_path": b"/json", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"fastloop-bench")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
    }


async def receive() -> dict:
    return REQUEST


def one_request(app, sent: list):
    async def send(message: dict) -> None:
        sent.append(message)
    return app(make_scope(), receive, send)


async def drive(app, n: int, mode: str) -> float:
    """CPU seconds for n requests; checks the last answer is the JSON document."""
    sent: list = []
    t0 = time.process_time()
    if mode == "await":
        for _ in range(n):
            sent.clear()
            await one_request(app, sent)
    else:
        for _ in range(n):
            sent.clear()
            await asyncio.ensure_future(one_request(app, sent))
    cpu = time.process_time() - t0
    start, body = sent[0], sent[-1]
    if start["status"] != 200 or json.loads(body["body"]) != {"message": "Hello, World!"}:
        raise SystemExit(f"unexpected answer: {sent!r}")
    return cpu


def measure(loop_name: str, mode: str, n: int, rounds: int) -> list[float]:
    if loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    app = build_fastapi_app()
    try:
        loop.run_until_complete(drive(app, 1000, mode))  # warm-up (routes, caches)
        return [loop.run_until_complete(drive(app, n, mode)) * 1e6 / n for _ in range(rounds)]
    finally:
        loop.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--loops", default="asyncio,uvloop")
    p.add_argument("--modes", default="await,task")
    args = p.parse_args()
    for loop_name in args.loops.split(","):
        for mode in args.modes.split(","):
            us = measure(loop_name, mode, args.requests, args.rounds)
            print(json.dumps({"loop": loop_name, "mode": mode, "requests": args.requests,
                              "rounds": args.rounds,
                              "cpu_us_per_req": round(statistics.median(us), 2),
                              "min": round(min(us), 2), "max": round(max(us), 2)}))


if __name__ == "__main__":
    main()
