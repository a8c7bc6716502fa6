"""fastloop behind nginx: a reverse proxy with upstream keep-alive, as operators run it.

nginx (Debian's package) runs as a subprocess on a free loopback port, with its config, pid
file, logs and temp directories in the test's tmp_path, and is stopped by its PID. Load goes
through it with fastloop bench. Checked: no 502 or 504 under load, upstream connections are
reused, and a graceful restart of fastloop behind it (a new server on the same port through
SO_REUSEPORT, then the old one stopped) drops no request.

The config is the one docs/reliability.md recommends; the two settings that matter:
- upstream `keepalive_timeout` shorter than fastloop's idle timeout, so nginx never sends a
  request on a connection fastloop is closing as idle;
- each upstream server listed several times, with `proxy_next_upstream error timeout`: a
  request that meets a connection the old server closed (an idle keep-alive one, or one still
  in its listen backlog) is retried. GET only: nginx does not retry non-idempotent requests.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from helpers import LOOPBACK, running_server, wait_until
from nginx_config import NGINX, config

import fastloop

bench = pytest.importorskip("fastloop.bench")

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx): "
                          "the reverse-proxy tests need it")

IDLE_TIMEOUT = 5.0  # fastloop's keep-alive idle timeout here; nginx's must be shorter


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Nginx:
    """nginx in the foreground, one process, everything it writes under tmp."""

    def __init__(self, tmp: Path, upstream_port: int) -> None:
        self.tmp = tmp
        self.upstream_port = upstream_port
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        for _ in range(3):  # the free port may be taken before nginx binds it: try another
            self.port = free_port()
            conf = self.tmp / "nginx.conf"
            conf.write_text(config(self.tmp, [f"{LOOPBACK}:{self.upstream_port}"] * 8,
                                   f"{LOOPBACK}:{self.port}", int(IDLE_TIMEOUT) - 1))
            self.proc = subprocess.Popen([NGINX, "-p", str(self.tmp), "-c", str(conf),
                                          "-e", str(self.tmp / "error.log")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if wait_until(self._ready, timeout=5.0):
                return self
            self.stop()
        raise AssertionError(f"nginx did not start: {self.error_log()}")

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return True  # exited: start() checks which
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator:
    started = []

    def start(upstream_port: int) -> Nginx:
        n = Nginx(tmp_path, upstream_port)
        started.append(n)
        n.start()
        assert n.running, n.error_log()
        return n

    try:
        yield start
    finally:
        for n in started:
            n.stop()


def app_named(name: str) -> fastloop.App:
    app = fastloop.App()
    app.static("/", b"Hello, World!")

    @app.route("/who")
    def who(request):
        return name

    return app


def test_load_through_nginx_has_no_502_or_504_and_reuses_upstream_connections(nginx_for):
    with running_server(app_named("a"), runtime_threads=2, timeouts={"idle": IDLE_TIMEOUT}) as srv:
        nginx = nginx_for(srv.port)
        runs = [("/", {"keepalive": True}, 20000),
                ("/who", {"keepalive": True}, 10000),
                ("/who", {"keepalive": False}, 1000)]  # new client connections; upstream kept
        for path, options, n in runs:
            r = bench.run(nginx.url(path), connections=32, threads=2, requests=n, timeout=10.0, **options)
            assert (r.requests, r.failed, r.errors) == (n, 0, {}), (path, options, r.to_dict())
            assert r.status == {200: n}, (path, options, r.status)
        total = sum(n for _, _, n in runs)
        stats = srv.stats()
        assert stats["requests"] == total
        # Upstream keep-alive: nginx reused its connections instead of one per request.
        assert stats["accepted"] <= 200, stats["accepted"]
        assert stats["parse_errors"] == 0 and stats["rejected"] == {} and stats["timeouts"] == {}
    assert "[error]" not in nginx.error_log() and "[crit]" not in nginx.error_log(), nginx.error_log()


def test_graceful_restart_behind_nginx_drops_nothing(nginx_for):
    old = fastloop.Server(app_named("old"), host=LOOPBACK, port=0, runtime_threads=2, dispatch="reuseport",
                          timeouts={"idle": IDLE_TIMEOUT})
    old.start()
    new = None
    try:
        nginx = nginx_for(old.port)
        results: dict = {}
        going = threading.Event()

        def load() -> None:
            def progress(elapsed: float, requests: int, failed: int) -> None:
                going.set()
            results["r"] = bench.run(nginx.url("/who"), connections=16, duration=3.0,
                                     timeout=10.0, progress=progress)

        loader = threading.Thread(target=load)
        loader.start()
        assert going.wait(10.0) and wait_until(lambda: old.stats()["requests"] > 100)
        # The restart: the new server joins the port's SO_REUSEPORT group, then the old one
        # stops gracefully (in-flight requests answered, idle connections closed).
        new = fastloop.Server(app_named("new"), host=LOOPBACK, port=old.port, runtime_threads=2,
                              dispatch="reuseport", timeouts={"idle": IDLE_TIMEOUT})
        new.start()
        time.sleep(0.3)
        old.stop(timeout=5.0)
        loader.join(20.0)
        r = results["r"]
        assert r.failed == 0 and r.errors == {}, r.to_dict()
        assert set(r.status) == {200}, (r.status, nginx.error_log()[-3000:])  # no 502, no 504
        old_stats, new_stats = old.stats(), new.stats()
        assert old_stats["open"] == 0 and old_stats["accepted"] == old_stats["closed"]
        assert new_stats["requests"] > 100, new_stats  # the new server took over
        # Each request answered exactly once (nginx retried only what the old one never read).
        assert old_stats["requests"] + new_stats["requests"] == r.requests + r.unfinished or \
            old_stats["requests"] + new_stats["requests"] == r.requests, (old_stats, new_stats, r.requests)
        retried = nginx.error_log().count("while reading response header from upstream") + \
            nginx.error_log().count("while connecting to upstream")
        print(f"restart behind nginx: {r.requests} requests, old {old_stats['requests']}, "
              f"new {new_stats['requests']}, nginx retried {retried}")
    finally:
        old.stop()
        if new is not None:
            new.stop()
