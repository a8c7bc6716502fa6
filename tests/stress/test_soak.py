"""Soak: load rounds in a row against one server, and after every round the books balance.

Each round is one `fastloop bench` run (fastloop.bench.run, in this process) of a fixed number
of requests, in turn keep-alive, a new connection per request and pipelined, against the
static route (answered in C) and a Python route in alternation. After every round:

- the bench's connections (established, and none failed) == the server's accepted count;
- no request is lost: the bench got a 200 for every request it made, and the server counted
  exactly as many; the server rejected nothing and timed nothing out;
- accepted == closed + open and open == 0, once the bench has closed its connections;
- the process's open descriptors are exactly the ones open before round one;
- RSS stays within RSS_SLACK of its value after round one (not checked under ASan).

The CI size takes a few seconds. The long version (docs/reliability.md) sets the environment:
FASTLOOP_SOAK_ROUNDS, FASTLOOP_SOAK_REQUESTS (per keep-alive or pipelined round),
FASTLOOP_SOAK_NEW_CONN_REQUESTS, FASTLOOP_SOAK_CONNECTIONS, FASTLOOP_SOAK_RSS_SLACK_MB, and
FASTLOOP_SOAK_REPORT=<file> to append one JSON line per round there.
"""

from __future__ import annotations

import gc
import json
import os
import time

import pytest
from helpers import open_fds, running_server, wait_until

import fastloop

bench = pytest.importorskip("fastloop.bench", reason="fastloop bench drives the soak")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


ROUNDS = env_int("FASTLOOP_SOAK_ROUNDS", 10)
REQUESTS = env_int("FASTLOOP_SOAK_REQUESTS", 20000)
# A closed connection holds its port pair in TIME_WAIT for a minute: the whole test suite
# shares loopback's ~28000 ephemeral ports, so the new-connection rounds stay smaller.
NEW_CONN_REQUESTS = env_int("FASTLOOP_SOAK_NEW_CONN_REQUESTS", 2000)
CONNECTIONS = env_int("FASTLOOP_SOAK_CONNECTIONS", 32)
RSS_SLACK = env_int("FASTLOOP_SOAK_RSS_SLACK_MB", 16) << 20
PIPELINE = 16

MODES = (
    ("keep-alive", {"keepalive": True}),
    ("new-connection", {"keepalive": False}),
    ("pipelined", {"keepalive": True, "pipeline": PIPELINE}),
)
PATHS = ("/", "/py")  # C's static answer, then a Python handler's


def soak_app() -> fastloop.App:
    app = fastloop.App()
    app.static("/", b"Hello, World!")

    @app.route("/py")
    def py(request):
        return b"Hello from Python"

    return app


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def sanitized() -> bool:
    """True under AddressSanitizer, whose quarantine of freed memory makes RSS meaningless."""
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


def counters(srv: fastloop.Server) -> dict:
    s = srv.stats()
    return {k: s[k] for k in ("accepted", "closed", "open", "requests", "parse_errors")} | {
        "rejected": sum(s["rejected"].values()), "timeouts": sum(s["timeouts"].values())}


def report(line: dict) -> None:
    print(json.dumps(line))
    path = os.environ.get("FASTLOOP_SOAK_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors and RSS in /proc")
def test_soak_rounds_balance_the_books():
    started = time.monotonic()
    with running_server(soak_app(), runtime_threads=2) as srv:
        baseline_fds = open_fds()
        rss_first = None
        before = counters(srv)
        for rnd in range(ROUNDS):
            mode, options = MODES[rnd % len(MODES)]
            path = PATHS[rnd % len(PATHS)]
            n = NEW_CONN_REQUESTS if mode == "new-connection" else REQUESTS
            t0 = time.monotonic()
            result = bench.run(srv.url.rstrip("/") + path, connections=CONNECTIONS, threads=2,
                               requests=n, timeout=10.0, **options)
            seconds = time.monotonic() - t0
            where = f"round {rnd + 1} ({mode} {path})"

            # The bench closes its connections as it finishes; the server sees each close.
            assert wait_until(lambda: srv.stats()["open"] == 0, timeout=5.0), (where, srv.stats())
            after = counters(srv)
            delta = {k: after[k] - before[k] for k in after}
            conns = result.connections
            assert (result.requests, result.failed, result.errors) == (n, 0, {}), (where, result.to_dict())
            assert result.status == {200: n}, where
            assert conns["failed"] == 0 and conns["attempted"] == conns["established"], (where, conns)
            assert conns["established"] == delta["accepted"], (where, conns, delta)
            assert delta["requests"] == n, (where, delta)
            assert delta["parse_errors"] == delta["rejected"] == delta["timeouts"] == 0, (where, delta)
            assert after["accepted"] == after["closed"] + after["open"], (where, after)

            # Descriptors: exactly the same set as before round one (each close was real).
            assert wait_until(lambda: open_fds() == baseline_fds, timeout=5.0), \
                (where, sorted(set(open_fds()) ^ set(baseline_fds)))
            gc.collect()
            rss = rss_bytes()
            if rss_first is None:
                rss_first = rss
            report({"round": rnd + 1, "mode": mode, "path": path, "requests": result.requests,
                    "lost": n - result.requests, "connections": conns["established"],
                    "accepted": delta["accepted"], "server_requests": delta["requests"],
                    "fds": len(open_fds()), "baseline_fds": len(baseline_fds),
                    "rss_mib": round(rss / 2**20, 1),
                    "rss_growth_mib": round((rss - rss_first) / 2**20, 1),
                    "seconds": round(seconds, 2), "rps": round(result.rps)})
            assert rss - rss_first < RSS_SLACK or sanitized(), \
                f"{where}: RSS grew {(rss - rss_first) >> 20} MiB since round one"
            before = after
    report({"total_seconds": round(time.monotonic() - started, 1)})
