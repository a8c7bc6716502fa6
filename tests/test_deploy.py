"""Deploys with pre-forked workers: each worker imports the application after the fork, so
SIGHUP serves the code on disk with no failed request, and threads the application starts at
import run in the workers; --preload imports once before forking (old code, as gunicorn)."""

import http.client
import os
import signal
import threading
import time

import pytest
from helpers import env_importing_this_fastloop
from serving import ServeProcess, get

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")

MODULE = '''
import os, sys, threading, time
import fastloop

VERSION = "{version}"
sys.stderr.write(f"deployed imported in {{os.getpid()}}\\n")  # one write: workers share stderr
ticker = threading.Thread(target=lambda: time.sleep(3600), daemon=True)
ticker.start()

app = fastloop.App()

@app.get("/v")
def v(request):
    return f"{{VERSION}} thread-alive={{ticker.is_alive()}}"
'''


def write_module(folder, version):
    # A new length as well as new text: the import system's cache is keyed on mtime and size.
    (folder / "deployed.py").write_text(MODULE.format(version=version))


class Answers:
    """Threads asking GET /v on new connections until stopped, keeping every outcome."""

    def __init__(self, port, threads=3):
        self.port = port
        self.bodies = []
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self):
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/v", headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode()
                (self.bodies if resp.status == 200 else self.failures).append(body)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()
            time.sleep(0.005)  # a small steady load, not a flood

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)


def serve_deployed(tmp_path, *extra):
    write_module(tmp_path, "v1")
    env = env_importing_this_fastloop()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return ServeProcess(["deployed:app", "--port", "0", "-w", "2", *extra], ready_workers=2, env=env)


def sighup_and_wait(srv):
    old = set(srv.worker_pids())
    srv.signal(signal.SIGHUP)
    for pid in old:
        srv.wait_for(f"worker {pid} stopped (exit status 0)", timeout=20)
    return old


def test_sighup_deploys_the_new_code_without_a_failed_request(tmp_path):
    with serve_deployed(tmp_path) as srv:
        # The supervisor never imported the application: only the workers did.
        importers = {int(line.rsplit(" ", 1)[1]) for line in srv.lines if "deployed imported in" in line}
        assert importers == set(srv.worker_pids()) and srv.pid not in importers, srv.log()
        assert get(srv.url, "/v") == b"v1 thread-alive=True"
        load = Answers(srv.port)
        try:
            time.sleep(0.3)
            write_module(tmp_path, "version-2")
            sighup_and_wait(srv)
            settled = len(load.bodies)
            time.sleep(0.5)
        finally:
            load.stop()
        assert load.failures == [], load.failures[:3]
        assert load.bodies[0] == "v1 thread-alive=True"
        after = load.bodies[settled:]
        assert after and set(after) == {"version-2 thread-alive=True"}, set(after)
        for _ in range(20):  # over new connections, so over both new workers
            assert get(srv.url, "/v") == b"version-2 thread-alive=True"
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0


def test_preload_imports_once_before_forking(tmp_path):
    with serve_deployed(tmp_path, "--preload") as srv:
        importers = [line for line in srv.lines if "deployed imported in" in line]
        assert importers == [f"deployed imported in {srv.pid}"]
        # The thread started at import stayed in the supervisor: fork copies only the caller.
        assert get(srv.url, "/v") == b"v1 thread-alive=False"
        write_module(tmp_path, "version-2")
        sighup_and_wait(srv)
        srv.wait_for("is accepting", 4)
        assert get(srv.url, "/v") == b"v1 thread-alive=False"  # preloaded: the old code
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0


def test_a_worker_that_cannot_import_stops_the_supervisor_with_one_line(tmp_path):
    env = env_importing_this_fastloop()
    with ServeProcess(["serve_apps:nothing", "--port", "0", "-w", "2"], env=env) as srv:
        assert srv.wait(20) == 1
    log = srv.log()
    assert "has no attribute 'nothing'" in log and "Traceback" not in log
    assert "could not load the application; stopping" in log
