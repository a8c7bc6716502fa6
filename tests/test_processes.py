"""Pre-forked workers under the supervisor, with real processes and signals: sharing the port,
replacing a killed worker, graceful stop under keep-alive load, SIGHUP and
--limit-max-requests replacing workers without a failed request (a second SIGINT forcing:
test_run_until_signal.py)."""

import http.client
import os
import signal
import threading
import time

import pytest
from helpers import wait_until
from serving import ServeProcess, get

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")


def pids_seen(url, want, tries=300):
    """The worker pids that answer /pid over new connections, until `want` distinct ones."""
    seen = set()
    for _ in range(tries):
        seen.add(int(get(url, "/pid")))
        if len(seen) >= want:
            break
    return seen


class Load:
    """Threads sending GET path until stopped, each outcome classified:
    ok         a complete 200;
    unanswered the connection was closed or reset before any byte of an answer: the server
               never read the request (an idle keep-alive connection it closed, the race every
               HTTP client retries) or dropped it unread;
    broken     anything else: a refused connection, a bad status, a truncated answer."""

    def __init__(self, port, threads=4, path="/pid", keep_alive=False):
        self.port = port
        self.path = path
        self.keep_alive = keep_alive
        self.ok = 0
        self.unanswered = []
        self.broken = []
        self.refused = 0
        self.server_stopping = False  # from then on, a refused connection is expected
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _run(self):
        headers = {} if self.keep_alive else {"Connection": "close"}
        conn = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                try:
                    conn.request("GET", self.path, headers=headers)
                    resp = conn.getresponse()
                except ConnectionRefusedError:
                    raise
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                    self.unanswered.append(repr(exc))
                    conn.close()
                    conn = None
                    continue
                body = resp.read()
                if resp.status == 200 and body:
                    self.ok += 1
                else:
                    self.broken.append((resp.status, body))
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, ConnectionRefusedError) and self.server_stopping:
                    self.refused += 1
                elif not self._stop.is_set():
                    self.broken.append(repr(exc))
                conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()


def test_workers_share_the_port_and_a_dead_worker_is_replaced():
    with ServeProcess(["serve_apps:app", "--port", "0", "-w", "2"], ready_workers=2) as srv:
        first = pids_seen(srv.url, 2)
        assert first == set(srv.worker_pids())
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        srv.wait_for(f"worker {victim} (slot")
        srv.wait_for("is accepting", 3)
        # No worker answers for the dead one's sockets until its successor does: then both do.
        assert pids_seen(srv.url, 2) == set(srv.worker_pids()) - {victim}
        assert "died (signal SIGKILL); replacing it" in srv.log()
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0


def test_graceful_stop_under_keep_alive_load_answers_what_was_read():
    args = ["serve_apps:app", "--port", "0", "-w", "2", "--runtime-threads", "2",
            "--timeout-graceful-shutdown", "5"]
    with ServeProcess(args, ready_workers=2) as srv:
        in_flight = []

        def slow_request(k):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            try:
                conn.request("GET", f"/slow?0.8&slow-{k}")
                resp = conn.getresponse()
                in_flight.append((k, resp.status, resp.getheader("Connection"), resp.read()[:5]))
            except OSError as exc:
                in_flight.append((k, repr(exc)))
            finally:
                conn.close()

        with Load(srv.port, threads=4, path="/", keep_alive=True) as load:
            slow = [threading.Thread(target=slow_request, args=(k,)) for k in range(4)]
            for t in slow:
                t.start()
            time.sleep(0.4)  # every slow request is now in a handler
            started = time.monotonic()
            load.server_stopping = True
            srv.signal(signal.SIGTERM)
            assert srv.wait(15) == 0
            took = time.monotonic() - started
            for t in slow:
                t.join(10)
        # A request is read once its handler starts (it logs so): each of those is answered,
        # with Connection: close. See test_graceful_stop_answers_requests_not_read_yet.
        started = [k for k in range(4) if f"handler started: slow-{k}" in srv.log()]
        assert started
        answered = {entry[0]: entry[1:] for entry in in_flight}
        assert {k: answered[k] for k in started} == {k: (200, "close", b"slept") for k in started}
        assert took < 5.0  # finished with the requests, not at the deadline
        assert load.ok > 10 and load.broken == [], load.broken


def test_sighup_replaces_every_worker_without_a_failed_request():
    with ServeProcess(["serve_apps:app", "--port", "0", "-w", "2"], ready_workers=2) as srv:
        old = set(srv.worker_pids())
        with Load(srv.port, threads=4) as load:
            time.sleep(0.2)
            srv.signal(signal.SIGHUP)
            srv.wait_for("replacing a worker", 2)
            srv.wait_for("is accepting", 4)
            for pid in old:
                srv.wait_for(f"worker {pid} stopped (exit status 0)")
            time.sleep(0.2)
        assert load.ok > 20 and load.broken == [], load.broken
        new = set(srv.worker_pids()) - old
        assert len(new) == 2 and pids_seen(srv.url, 2) == new
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    expect_no_connection_dropped(load)


def expect_no_connection_dropped(load):
    """Every request here has a fresh connection, and none may go unanswered: a stopping
    worker reads its idle and new connections once more and gives a new one time to send its
    request; the supervisor keeps the listening sockets open, so nothing is lost in the queue."""
    assert not load.unanswered, f"{len(load.unanswered)} connection(s) dropped: {load.unanswered[0]}"


def test_max_requests_recycles_workers_with_jitter_and_no_failed_request():
    args = ["serve_apps:app", "--port", "0", "-w", "1", "--limit-max-requests", "40",
            "--limit-max-requests-jitter", "10"]
    with ServeProcess(args, ready_workers=1) as srv:
        with Load(srv.port, threads=2) as load:
            assert wait_until(lambda: len(srv.worker_pids()) >= 3, 20), srv.log()
        assert load.broken == [], load.broken
        assert "asking to be replaced" in srv.log()
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    expect_no_connection_dropped(load)


def test_a_worker_outlives_no_supervisor():
    with ServeProcess(["serve_apps:app", "--port", "0", "-w", "2"], ready_workers=2) as srv:
        workers = srv.worker_pids()
        srv.proc.kill()  # SIGKILL: the supervisor cannot tell anyone
        srv.proc.wait(5)

        def gone(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        assert wait_until(lambda: all(gone(pid) for pid in workers), 10)
