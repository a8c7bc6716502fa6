"""`fastloop bench` must never mislead (issue 14): Ctrl-C prints the real summary, the exit
status says whether anything succeeded, the request books balance exactly in every mode,
every flag explains itself, and the TIME_WAIT warning agrees with `fastloop doctor`.

The books: every request bench starts ends in exactly one of answered (`requests`),
`sent_unanswered` or `not_sent`, so `sent == requests + sent_unanswered`; connections that
closed before sending anything are counted apart (`connections["never_sent"]`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import sys
import time
from typing import Callable, Tuple

import pytest

import fastloop
from bench_servers import canned, closing_unread
from fastloop import bench, doctor
from helpers import LOOPBACK, env_importing_this_fastloop, running_server, wait_until


def hello_app() -> fastloop.App:
    app = fastloop.App()
    app.static("/", b"Hello")
    return app


def assert_books_balance(r: bench.BenchResult) -> None:
    assert r.sent == r.requests + r.sent_unanswered
    # Each request started is answered, unanswered after being sent, or never sent; and each
    # one not answered is either lost to an error or cut off by the end of the run.
    assert r.sent_unanswered + r.not_sent == r.failed + r.unfinished
    d = r.to_dict()
    assert d["sent"] == d["requests"] + d["sent_unanswered"]
    assert "never_sent" in d["connections"]


# ---- Ctrl-C ----------------------------------------------------------------------------------

def interrupted_bench(started: Callable[[], bool], after: float, *args: str,
                      signum: int = signal.SIGINT) -> Tuple[int, str, str]:
    """Runs `fastloop bench *args` as a process, sends it `signum` `after` seconds once
    started() is true (the load really began, not just the fork), and returns its exit
    status, stdout and stderr. The process is killed if it outlives the test."""
    # Outside the source tree, which holds no built extension on a fresh clone (CI): the child
    # imports the fastloop these tests import.
    proc = subprocess.Popen([sys.executable, "-m", "fastloop", "bench", *args],
                            env=env_importing_this_fastloop(), cwd=tempfile.gettempdir(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(started, timeout=15)
        time.sleep(after)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_prints_the_real_summary(signum):
    with running_server(hello_app(), runtime_threads=1) as srv:
        rc, out, err = interrupted_bench(lambda: srv.stats()["requests"] > 0, 1.0, "-c", "4",
                                         "-d", "30s", "--json", f"http://{LOOPBACK}:{srv.port}/",
                                         signum=signum)
        served = srv.stats()["requests"]
    assert rc == 0, err
    r = json.loads(out)
    assert r["interrupted"] is True
    assert 0.9 <= r["duration_s"] <= 3.0  # about the second it ran, not 0 and not the 30 asked
    assert r["requests"] > 0 and r["rps"] == pytest.approx(r["requests"] / r["duration_s"], rel=1e-3)
    assert r["rps"] < 10_000_000  # a real rate, not requests / 1 ns
    assert r["sent"] == r["requests"] + r["sent_unanswered"]
    assert r["requests"] <= served <= r["sent"]
    assert r["connections"]["established"] == 4


def test_ctrl_c_with_nothing_answered_exits_non_zero():
    # The server accepts but never answers: the summary still prints, the status says failure.
    with canned(b"") as srv:
        rc, out, _ = interrupted_bench(lambda: len(srv.peers) >= 2, 0.3, "-c", "2", "-d", "30s",
                                       "--json", f"http://{LOOPBACK}:{srv.port}/")
    assert rc == 1
    r = json.loads(out)
    assert r["interrupted"] and r["requests"] == 0
    assert r["sent"] == r["sent_unanswered"] == r["unfinished"] == 2


# ---- exit status -------------------------------------------------------------------------------

def test_exit_status_no_success_and_fail_on_error(capsys):
    # Each keep-alive connection gets one answer, then the server closes under the next request:
    # every other request fails (EOF, or a reset when it was written after the close).
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", close=True) as srv:
        url = f"http://{LOOPBACK}:{srv.port}/"
        r = bench.run(url, connections=1, requests=10)
        assert r.requests == 5 and r.failed == 5
        assert set(r.errors) <= {"EOF", "ECONNRESET"} and sum(r.errors.values()) == 5
        assert bench.exit_status(r, fail_on_error=False) == 0
        assert bench.exit_status(r, fail_on_error=True) == 1
        assert bench.main(["-c", "1", "-n", "10", url]) == 0
        assert bench.main(["-c", "1", "-n", "10", "--fail-on-error", url]) == 1
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as srv:
        assert bench.main(["-c", "2", "-n", "20", "--fail-on-error", f"http://{LOOPBACK}:{srv.port}/"]) == 0
    capsys.readouterr()


# ---- the books balance ---------------------------------------------------------------------------

MODES = {
    "keep-alive": {},
    "no-keepalive": {"keepalive": False},
    "pipeline": {"pipeline": 16},
    "rate": {"rate": 2000},
}


@pytest.mark.parametrize("mode", MODES)
def test_books_balance_when_a_duration_run_ends_mid_flight(mode):
    with running_server(hello_app(), runtime_threads=1) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=8, duration=0.4, **MODES[mode])
        wait_until(lambda: srv.stats()["open"] == 0, timeout=5)
        served = srv.stats()["requests"]
    assert r.failed == 0 and r.requests > 0
    assert_books_balance(r)
    # What the server answered lies between what bench saw answered and what it sent.
    assert r.requests <= served <= r.sent
    assert r.connections["established"] == r.connections["attempted"]


@pytest.mark.parametrize("mode", ["keep-alive", "no-keepalive", "pipeline"])
def test_books_balance_in_a_counted_run(mode):
    kw = dict(MODES[mode])
    with running_server(hello_app(), runtime_threads=1) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=5, requests=333, **kw)
    assert r.requests == r.sent == 333 and r.sent_unanswered == r.not_sent == 0
    assert r.connections["never_sent"] == 0
    assert_books_balance(r)


def test_requests_that_never_went_out_whole_are_counted_apart():
    # 32 MiB bodies: more than the socket buffers hold, so the server's reset (it closes with
    # the bytes unread) interrupts every request while it is being written.
    with closing_unread() as port:
        r = bench.run(f"http://{LOOPBACK}:{port}/", connections=1, requests=2, method="POST",
                      body=b"x" * (32 << 20))
    assert r.requests == 0 and r.sent == 0 and r.sent_unanswered == 0
    assert r.not_sent == r.failed == 2
    assert r.connections["established"] == 2 == r.connections["never_sent"]
    assert_books_balance(r)
    assert "2 never sent" in bench.format_report(r)


def test_refused_connections_send_nothing():
    with canned(b"") as srv:
        port = srv.port
    r = bench.run(f"http://{LOOPBACK}:{port}/", connections=2, duration=0.2)
    assert r.sent == r.requests == 0 and r.not_sent == r.failed > 0
    assert r.connections["established"] == r.connections["never_sent"] == 0
    assert_books_balance(r)


# ---- the command line ------------------------------------------------------------------------------

def test_every_flag_has_help_text():
    for action in bench._parser()._actions:
        assert action.help and action.help.strip(), action.option_strings or action.dest


@pytest.mark.parametrize("argv,word", [
    (["-d", "5x"], "5x"),
    (["--duration=-1s"], "-1s"),
    (["-d", "0"], "0"),
    (["--timeout", "soon"], "soon"),
    (["-c", "0"], "0"),
    (["-n", "many"], "many"),
    (["--local-ports", "9-x"], "9-x"),
    (["--local-ports", "70000"], "70000"),
])
def test_a_bad_option_gets_one_line(argv, word, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main([*argv, "http://127.0.0.1:1/"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastloop bench: ") and word in err
    assert "Traceback" not in err and "usage:" not in err


def test_a_missing_body_file_gets_one_line(tmp_path, capsys):
    assert bench.main(["--body-file", str(tmp_path / "nope"), "http://127.0.0.1:1/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--body-file" in err and "Traceback" not in err


def test_bad_duration_from_the_api_names_it():
    with pytest.raises(ValueError, match="invalid duration '5x'"):
        bench.parse_duration("5x")


# ---- TIME_WAIT: one reading for bench and doctor ---------------------------------------------------

@pytest.mark.parametrize("reuse,warned", [(0, True), (1, False), (2, False)])
def test_no_keepalive_warning_follows_doctors_tw_reuse(monkeypatch, reuse, warned):
    # 1000 ports make the limit ~17 new connections/s: any no-keepalive run is past it,
    # unless tcp_tw_reuse says the limit does not apply (2: loopback, which this target is).
    monkeypatch.setattr(doctor, "tw_reuse", lambda: reuse)
    monkeypatch.setattr(doctor, "port_range", lambda: (40000, 40999))
    with running_server(hello_app(), runtime_threads=1) as srv:
        r = bench.run(f"http://{LOOPBACK}:{srv.port}/", connections=2, requests=40,
                      keepalive=False)
    assert r.requests == 40
    assert any("TIME_WAIT" in w for w in r.warnings) is warned
    limit = doctor.time_wait_limit(loopback=True)
    assert (r.max_new_connections_per_s is None) is (limit is None) is (not warned)
    port_check = next(c for c in doctor.checks() if c.name == "ephemeral port range")
    if warned:
        assert limit == pytest.approx(1000 / doctor.time_wait_seconds())
        assert f"~{limit:.0f} new connections/s" in port_check.why
    else:
        assert "does not apply" in port_check.why


def test_time_wait_limit_reads_tw_reuse(monkeypatch):
    monkeypatch.setattr(doctor, "port_range", lambda: (1001, 61000))
    monkeypatch.setattr(doctor, "time_wait_seconds", lambda: 60)
    for reuse, loopback, expected in [(0, True, 1000.0), (0, False, 1000.0), (1, False, None),
                                      (2, True, None), (2, False, 1000.0), (None, True, 1000.0)]:
        monkeypatch.setattr(doctor, "tw_reuse", lambda r=reuse: r)
        assert doctor.time_wait_limit(loopback=loopback) == expected, (reuse, loopback)
    monkeypatch.setattr(doctor, "tw_reuse", lambda: 0)
    assert doctor.time_wait_limit(sources=4) == 4000.0
