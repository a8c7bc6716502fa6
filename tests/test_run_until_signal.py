"""fastloop.process.run_until_signal behind every entry point: `fastloop serve` alone and
supervised, Server.serve_started() in a program and `fastloop demo` stop on a signal, and a
second SIGINT forces the stop the same way in each."""

import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import env_importing_this_fastloop
from serving import HERE, ServeProcess, get, hanging_request

PROGRAM = r"""
import logging, sys, time
import fastloop
logging.basicConfig(level=logging.INFO, format="%(message)s")
app = fastloop.App()

@app.get("/slow")
def slow(request):
    time.sleep(8)
    return "slept"

srv = fastloop.Server(app, port=0, runtime_threads=2)
srv.start()
print(f"listening on {srv.url}", file=sys.stderr, flush=True)
try:
    status = srv.serve_started(timeout=30)
except KeyboardInterrupt:
    print("left a handler behind", file=sys.stderr, flush=True)
    status = 1
print(f"serve_started returned {status}", file=sys.stderr, flush=True)
sys.exit(status)
"""


# entry point -> (arguments of ServeProcess, command, workers to wait for)
ENTRY_POINTS = {
    "fastloop serve": (["serve_apps:app", "--port", "0", "--timeout-graceful-shutdown", "30"],
                       None, 0),
    "supervisor": (["serve_apps:app", "--port", "0", "-w", "2",
                    "--timeout-graceful-shutdown", "30"], None, 2),
    "Server.serve_started": ([], [sys.executable, "-c", PROGRAM], 0),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_second_sigint_forces_the_stop_the_same_way_everywhere(entry):
    args, command, workers = ENTRY_POINTS[entry]
    with ServeProcess(args, command=command, ready_workers=workers) as srv:
        outcome: list = []
        t = threading.Thread(target=hanging_request, args=(srv.port, outcome))
        t.start()
        time.sleep(0.3)
        srv.signal(signal.SIGINT)
        srv.wait_for("stopping (SIGINT)")
        started = time.monotonic()
        srv.signal(signal.SIGINT)
        assert srv.wait(10) == 1
        assert time.monotonic() - started < 5.0
        t.join(15)
    assert outcome and outcome[0] != 200  # the request was cut, as asked
    assert "second SIGINT: closing every connection now" in srv.log()  # by the serving process
    if command is not None:
        # The handler still sleeps on its own thread; the loops never waited for it, so the
        # forced stop returns (status 1) without having to leave the call stack behind.
        assert "serve_started returned 1" in srv.log()


def test_server_serve_started_returns_0_after_sigterm():
    with ServeProcess([], command=[sys.executable, "-c", PROGRAM]) as srv:
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    assert "serve_started returned 0" in srv.log()


def test_demo_serves_and_stops_on_sigint_with_its_counters():
    proc = subprocess.Popen([sys.executable, "-m", "fastloop", "demo", "--port", "0"], cwd=HERE,
                            env=env_importing_this_fastloop(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("fastloop demo on http://"), line
        url = line.split()[3]
        assert get(url, "/hello?name=t") == b"Hello from Python, t!\n"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0
    assert "stopping (SIGINT)" in out
    assert '"requests": 1' in out
