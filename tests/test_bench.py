"""fastloop bench: its counts must match the server's, its errors must be classified, its
latency must show what a rate-limited client would otherwise hide.

Against a fastloop server, bench's established connections must equal the server's accepted
count and its requests the server's request count, exactly. Against CannedServer (below), a
plain Python socket server, the client's response parser and --source are checked: it records
the address each connection came from and answers every request with fixed bytes.

Every load here is bounded by a request count or a duration of at most a second or two.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import sys
import threading
import time
from typing import List, Optional

import pytest

import fastloop
from fastloop import bench, doctor
from fastloop._bench import LatencyHistogram
from bench_servers import canned
from helpers import LOOPBACK, running_server, wait_until

LINUX = sys.platform.startswith("linux")


def hello_app() -> fastloop.App:
    app = fastloop.App()
    app.static("/", b"Hello")
    return app


def settled(server: fastloop.Server, accepted: int, requests: Optional[int] = None) -> dict:
    """The server's stats once its counters reach the expected values (or after 5 s)."""
    def done() -> bool:
        st = server.stats()
        return st["accepted"] >= accepted and (requests is None or st["requests"] >= requests) \
            and st["open"] == 0
    wait_until(done, timeout=5.0)
    time.sleep(0.05)  # a counter that would overshoot has had time to
    return server.stats()


# ---- the histogram ---------------------------------------------------------------------------

def test_histogram_exact_below_linear_range_and_three_digits_above():
    h = LatencyHistogram()
    for v in range(1, 1001):
        h.record(v)
    assert h.count == 1000 and h.min == 1 and h.max == 1000
    assert h.percentile(50) == 500 and h.percentile(100) == 1000
    big = LatencyHistogram()
    values = [random.Random(7).randrange(1, 10**10) for _ in range(20000)]
    for v in values:
        big.record(v)
    values.sort()
    for p in (50, 90, 99, 99.9):
        exact = values[max(0, int(len(values) * p / 100 + 0.999999) - 1)]
        assert exact <= big.percentile(p) <= exact * (1 + 1 / 1024) + 1, p
    assert big.max == values[-1]


def test_histogram_merge_and_empty():
    a, b = LatencyHistogram(), LatencyHistogram()
    assert a.percentile(99) == 0 and a.count == 0
    a.record(10_000)
    b.record(2_000_000)
    a.merge(b)
    assert a.count == 2 and a.min == 10_000 and a.max == 2_000_000
    assert a.percentile(50) == pytest.approx(10_000, rel=1e-3)


# ---- counts match the server ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["keepalive", "no-keepalive", "pipeline"])
def test_counts_match_fastloop_server(mode):
    kw = {"keepalive": mode != "no-keepalive", "pipeline": 8 if mode == "pipeline" else 1}
    n = 400 if mode == "no-keepalive" else 3000
    with running_server(hello_app(), runtime_threads=2) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=12, threads=2, requests=n,
                      **kw)
        st = settled(srv, r.connections["established"], n)
    assert r.failed == 0 and r.errors == {}
    assert r.requests == n and r.status == {200: n}
    assert r.connections["established"] == st["accepted"]
    assert r.connections["attempted"] == r.connections["established"]
    assert st["requests"] == n
    if mode == "no-keepalive":
        assert r.connections["established"] == n
        assert r.connections["closed_by_peer_eof"] == n  # the server closed first, every time
    else:
        assert r.connections["established"] == 12
        assert r.connections["closed_by_peer"] == 0
    assert r.latency.count == n and 0 < r.latency_us()["p50"] <= r.latency_us()["max"]


def test_duration_run_counts_match_fastloop_server():
    with running_server(hello_app(), runtime_threads=1) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=6, duration="0.5s",
                      keepalive=False)
        st = settled(srv, r.connections["established"])
    assert r.connections["established"] == st["accepted"]
    # A request still being written at the end may or may not have reached the server.
    assert r.requests <= st["requests"] <= r.requests + r.unfinished
    assert 0.45 < r.duration_s < 1.5


@pytest.mark.parametrize("pipeline", [1, 4])
def test_until_ends_a_run_with_every_request_under_way_answered(pipeline):
    # Each answer takes 0.2 s, so when `until` is set every connection has requests written
    # and unanswered: a run that stopped at once would abandon them (counted unfinished).
    app = fastloop.App()

    @app.route("/slow")
    def slow(request):
        time.sleep(0.2)
        return "slow"

    until = threading.Event()
    with running_server(app, threads=8) as srv:
        timer = threading.Timer(0.5, until.set)
        timer.start()
        started = time.monotonic()
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/slow", connections=4, duration=30.0,
                      pipeline=pipeline, until=until)
        took = time.monotonic() - started
        st = settled(srv, r.connections["established"])
    assert took < 10.0  # ended by until, not by its duration
    assert r.sent >= 4 * pipeline
    assert r.requests == r.sent == st["requests"], (r.requests, r.sent, st["requests"])
    assert r.sent_unanswered == 0 and r.unfinished == 0 and r.errors == {}


# ---- errors ----------------------------------------------------------------------------------

def refused_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_connection_refused_is_classified():
    r = bench.run(f"http://{LOOPBACK}:{refused_port()}/", connections=2, duration=0.3)
    assert r.requests == 0 and r.connections["established"] == 0
    assert r.errors["ECONNREFUSED"] == r.connections["failed"] == r.connections["attempted"] > 0
    assert r.errors_by_phase == {"connect": {"ECONNREFUSED": r.errors["ECONNREFUSED"]}}
    report = bench.format_report(r)
    assert "ECONNREFUSED" in report and bench.ERROR_CAUSES["ECONNREFUSED"] in report


def local_port_range_supported() -> bool:
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_IP, 51, 0)  # IP_LOCAL_PORT_RANGE, Linux >= 6.3
        except OSError:
            return False
    return True


@pytest.mark.skipif(not LINUX or not local_port_range_supported(),
                    reason="needs IP_LOCAL_PORT_RANGE (Linux >= 6.3)")
def test_port_exhaustion_is_eaddrnotavail():
    # Four local ports for one source address, eight keep-alive connections: the system's
    # settings stay untouched, the option applies to bench's own sockets only.
    lo, hi = doctor.port_range() or (32768, 60999)
    first = random.Random().randrange(lo, hi - 4)
    source = f"127.0.{random.randrange(1, 250)}.{random.randrange(2, 250)}"
    with running_server(hello_app(), runtime_threads=1) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=8, duration=0.3,
                      source=source, local_ports=(first, first + 3))
        st = settled(srv, r.connections["established"])
    assert r.connections["established"] == 4 == st["accepted"]
    assert r.errors.get("EADDRNOTAVAIL", 0) > 0
    assert set(r.errors) == {"EADDRNOTAVAIL"}
    assert "ephemeral ports exhausted" in bench.format_report(r)


# ---- rate mode: coordinated omission ---------------------------------------------------------

def test_rate_mode_corrected_latency_shows_a_stall():
    app = fastloop.App()
    calls = [0]

    @app.route("/")
    def handler(request):
        calls[0] += 1
        if calls[0] == 50:
            time.sleep(0.5)  # the one stall: with one worker thread, the server stops
        return b"ok"

    with running_server(app, runtime_threads=1) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=2, duration=2.0, rate=200)
    assert r.failed == 0 and 300 < r.requests <= 400
    corrected, raw = r.latency_us(True), r.latency_us(False)
    # ~100 requests were due during the stall: a quarter of the run waited 0..500 ms.
    assert corrected["p90"] > 100_000
    assert raw["p90"] < 50_000
    assert raw["max"] > 400_000  # the stalled request itself is there, only not its victims


# ---- a plain server: the response parser and --source ------------------------------------------

RESPONSES = [
    ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", False),
    ("chunked with trailer", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n", False),
    ("interim 100 first", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
     b"content-length: 0\r\n\r\n", False),
    ("body until close", b"HTTP/1.0 200 OK\r\n\r\nuntil the end", True),
    ("large body", b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200000, False),
]


@pytest.mark.parametrize("name,response,close", RESPONSES, ids=[r[0] for r in RESPONSES])
def test_response_framing(name, response, close):
    with canned(response, close) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=2, requests=20)
    assert r.failed == 0 and r.errors == {}, r.errors
    assert r.requests == 20 and sum(r.status.values()) == 20
    assert r.bytes_in == 20 * len(response)
    if close:
        assert r.connections["established"] == 20 == r.connections["closed_by_peer_eof"]


def test_truncated_response_is_premature_eof():
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=1, requests=5)
    assert r.requests == 0 and r.failed == 5
    assert r.errors == {"EOF": 5} and r.connections["closed_by_peer_eof"] == 5


# Lengths over 4 GiB: each response below announces 2**32 + 3 bytes and sends 3 before the
# server closes. A parser that kept the length in 32 bits would see a complete response.
BEYOND_4GIB = [
    ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 4294967299\r\n\r\nabc"),
    ("chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000003\r\nabc"),
]


@pytest.mark.parametrize("name,response", BEYOND_4GIB, ids=[r[0] for r in BEYOND_4GIB])
def test_lengths_beyond_4gib_are_not_narrowed(name, response):
    with canned(response, close=True) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=1, requests=3)
    assert r.requests == 0 and r.failed == 3 and r.errors == {"EOF": 3}


def test_chunk_sizes_with_leading_zeros_are_accepted():
    response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"0" * 30 + b"3\r\nabc\r\n0000\r\n\r\n")
    with canned(response) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=1, requests=4)
    assert r.requests == 4 and r.errors == {}


OVERFLOWING = [
    ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n"),
    ("chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"),
]


@pytest.mark.parametrize("name,response", OVERFLOWING, ids=[r[0] for r in OVERFLOWING])
def test_lengths_beyond_int64_are_eproto(name, response):
    with canned(response) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=1, requests=2)
    assert r.requests == 0 and r.errors == {"EPROTO": 2}


def test_garbage_response_is_eproto():
    with canned(b"SSH-2.0-OpenSSH\r\n\r\n") as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=1, requests=3)
    assert r.failed == 3 and r.errors == {"EPROTO": 3}


@pytest.mark.skipif(not LINUX, reason="only Linux routes all of 127.0.0.0/8 to lo")
def test_source_addresses_are_what_the_server_sees():
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close=True) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=3, requests=12,
                      keepalive=False, source="127.0.0.2,127.0.0.3,127.0.0.4")
        wait_until(lambda: len(srv.peers) >= 12, timeout=3)
    assert r.requests == 12 and r.connections["established"] == 12
    assert sorted(set(srv.peers)) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert len(srv.peers) == 12 and all(srv.peers.count(a) == 4 for a in set(srv.peers))


def test_source_cidr_parsing():
    assert bench._parse_sources("127.0.0.0/30", socket.AF_INET) == ["127.0.0.1", "127.0.0.2"]
    assert bench._parse_sources("127.0.0.5/32,127.0.0.9", socket.AF_INET) == ["127.0.0.5", "127.0.0.9"]
    with pytest.raises(ValueError):
        bench._parse_sources("::1", socket.AF_INET)


def test_request_building():
    req = bench.build_request("post", "/a?b=1", "h:1", ["X-A: 1"], b"xyz", keepalive=False)
    assert req.startswith(b"POST /a?b=1 HTTP/1.1\r\nHost: h:1\r\n")
    assert b"\r\nX-A: 1\r\n" in req and b"\r\nContent-Length: 3\r\n" in req
    assert req.endswith(b"\r\nConnection: close\r\n\r\nxyz")
    assert bench.parse_duration("1m") == 60 and bench.parse_duration("250ms") == 0.25


# ---- the command -----------------------------------------------------------------------------

def run_cli(argv: List[str]) -> "tuple[int, str]":
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = bench.main(argv)
    return rc, out.getvalue()


def test_cli_json_has_the_documented_keys():
    with running_server(hello_app(), runtime_threads=1) as srv:
        rc, out = run_cli(["-c", "4", "-n", "200", "-H", "X-Test: 1", "--json",
                           f"http://{LOOPBACK}:{srv.port}/"])
    assert rc == 0
    data = json.loads(out)
    for key in ("requests", "duration_s", "rps", "status", "latency_us", "connections",
                "errors", "time_wait", "port_range"):
        assert key in data, key
    assert data["requests"] == 200 and data["status"] == {"200": 200}
    assert set(data["latency_us"]) >= {"p50", "p90", "p99", "p999", "max"}
    assert set(data["connections"]) >= {"attempted", "established", "failed", "closed_by_peer"}
    assert set(data["time_wait"]) == {"before", "after"}
    if LINUX:
        assert data["port_range"]["low"] <= data["port_range"]["high"]


def test_cli_fail_on_error_and_text_report():
    url = f"http://{LOOPBACK}:{refused_port()}/"
    rc, out = run_cli(["-c", "1", "-d", "200ms", "--fail-on-error", url])
    assert rc == 1
    assert "ECONNREFUSED" in out and "Connections:" in out and "TIME_WAIT:" in out
    rc, _ = run_cli(["-c", "1", "-d", "100ms", url])
    assert rc == 1  # no request succeeded: non-zero even without --fail-on-error (as wrk)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError):
        bench.run("https://127.0.0.1/", requests=1)
    with pytest.raises(ValueError):
        bench.run("http://127.0.0.1:1/", requests=1, rate=10, pipeline=2)
    assert run_cli(["--rate", "-1", "-n", "1", "http://127.0.0.1:1/"])[0] == 2
