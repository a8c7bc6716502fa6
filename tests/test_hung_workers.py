"""--timeout-worker: a worker process that stops showing signs of life (its heartbeat, sent by
its main thread, needs the GIL and a running process) is killed, replaced, logged and counted;
a busy but responsive worker is left alone."""

import http.client
import os
import signal
import threading
import time

import pytest
from helpers import wait_until
from serving import ServeProcess
from test_processes import pids_seen

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")

TIMEOUT = 2.0  # seconds of silence that make a worker hung; loose, for a busy test machine


def request(port, path, outcome):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        outcome.append((resp.status, resp.read()))
    except (OSError, http.client.HTTPException) as exc:
        outcome.append(type(exc).__name__)
    finally:
        conn.close()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("how", ["sigstop", "handler-holding-the-gil"])
def test_a_hung_worker_is_killed_and_replaced(how):
    args = ["serve_apps:app", "--port", "0", "-w", "2", "--timeout-worker", str(TIMEOUT)]
    with ServeProcess(args, ready_workers=2) as srv:
        workers = set(pids_seen(srv.url, 2))
        # Busy is not hung: a handler sleeping longer than the timeout (GIL released).
        slow: list = []
        request(srv.port, "/slow?3", slow)
        assert slow and slow[0][0] == 200, slow
        assert "no sign of life" not in srv.log()
        outcome: list = []
        if how == "sigstop":
            victim = min(workers)
            os.kill(victim, signal.SIGSTOP)
        else:
            t = threading.Thread(target=request, args=(srv.port, "/freeze?60", outcome))
            t.start()
            victim = 0
        srv.wait_for("showed no sign of life", timeout=15)
        line = next(line for line in srv.lines if "showed no sign of life" in line)
        hung = int(line.split("worker ", 1)[1].split()[0])
        assert hung in workers and (victim in (0, hung))
        assert "(1 hung worker(s) killed so far)" in line
        srv.wait_for(f"worker {hung} (slot {line.split('(slot ')[1].split(')')[0]}) died "
                     "(signal SIGKILL); replacing it")
        srv.wait_for("is accepting", 3)
        assert wait_until(lambda: not alive(hung), 5)
        assert pids_seen(srv.url, 2) == set(srv.worker_pids()) - {hung}
        if how != "sigstop":
            t.join(10)
            assert outcome and outcome[0] != (200, b"thawed")  # cut when its process died
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0


def test_without_the_setting_a_stopped_worker_is_left_alone():
    with ServeProcess(["serve_apps:app", "--port", "0", "-w", "2"], ready_workers=2) as srv:
        victim = min(pids_seen(srv.url, 2))
        os.kill(victim, signal.SIGSTOP)
        try:
            time.sleep(TIMEOUT + 1.0)
            assert alive(victim) and "no sign of life" not in srv.log()
        finally:
            os.kill(victim, signal.SIGCONT)
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
