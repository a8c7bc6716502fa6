"""Beyond one host: nginx in front of two fastloop hosts, each in a network namespace of its own.

    namespace F (front): nginx on 127.0.0.1:8080, and the load client
        veth 10.213.1.1/30 -- 10.213.1.2/30  namespace A: fastloop serve -w 2 on 10.213.1.2:8000
        veth 10.213.2.1/30 -- 10.213.2.2/30  namespace B: fastloop serve -w 2 on 10.213.2.2:8000

The test makes the three namespaces and the two veth pairs itself; every address lives inside
them (none in this machine's own namespace, none that leads anywhere else), and they are
deleted, with the veths, whatever happens. Under load through nginx, host A gets SIGHUP (its
workers replaced one by one), then host B, then B is stopped (SIGTERM): nginx must answer every
request, none with a 5xx, and both hosts must have served. This is the README's scale-out
recipe (the nginx settings of docs/reliability.md, tests/nginx_config.py, with two upstream
hosts), as a test.

Skipped, with the reason, where nginx or iproute2 is missing or namespaces cannot be made
(not root, no CAP_SYS_ADMIN, a container without them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from helpers import env_importing_this_fastloop, wait_until
from nginx_config import NGINX, SBIN_PATH, config
from serving import ServeProcess

HERE = os.path.dirname(os.path.abspath(__file__))
IP = shutil.which("ip", path=SBIN_PATH)
pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install "
                                             "nginx): the scale-out test needs it"),
    pytest.mark.skipif(IP is None, reason="iproute2's ip is not installed: no network namespaces"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork"),
]

NET = "10.213"           # private /30s, used only inside the test's own namespaces
PORT = 8000              # each host's port, inside its namespace
FRONT_PORT = 8080        # nginx's, on the front namespace's loopback
IDLE_TIMEOUT = 5         # fastloop's keep-alive idle timeout; nginx's must be shorter
STEP_TIMEOUT = 30.0      # any one step (a SIGHUP's replacements, a stop) ends within this


def ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=10)


def in_ns(ns: str, *command: str) -> List[str]:
    # `ip netns exec` enters the namespace and execs the command: its PID is the command's.
    return [IP, "netns", "exec", ns, *command]


@pytest.fixture
def namespaces() -> Iterator[dict]:
    """{"front": name, "a": name, "b": name}, wired as the module docstring draws; deleted on
    the way out. Skips when namespaces cannot be made here."""
    tag = f"fl{os.getpid() % 100000}"
    names = {"front": f"{tag}f", "a": f"{tag}a", "b": f"{tag}b"}
    made: List[str] = []
    try:
        try:
            ip("netns", "add", names["front"])
        except (subprocess.CalledProcessError, OSError) as exc:
            err = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"cannot make a network namespace here ({err.decode().strip() or exc}): "
                        "the scale-out test needs root with CAP_SYS_ADMIN")
        made.append(names["front"])
        ip("-n", names["front"], "link", "set", "lo", "up")
        for i, host in enumerate(("a", "b"), start=1):
            ns = names[host]
            ip("netns", "add", ns)
            made.append(ns)
            # Both ends are created straight inside the namespaces: nothing touches ours.
            front_end, host_end = f"{tag}f{host}", f"{tag}{host}f"
            ip("link", "add", front_end, "netns", names["front"], "type", "veth",
               "peer", "name", host_end, "netns", ns)
            ip("-n", names["front"], "addr", "add", f"{NET}.{i}.1/30", "dev", front_end)
            ip("-n", ns, "addr", "add", f"{NET}.{i}.2/30", "dev", host_end)
            for where, dev in ((names["front"], front_end), (ns, host_end), (ns, "lo")):
                ip("-n", where, "link", "set", dev, "up")
        yield names
    finally:
        for ns in reversed(made):  # deleting a namespace deletes its end of each veth too
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)


class Nginx:
    def __init__(self, ns: str, tmp: Path) -> None:
        self.tmp = tmp
        # Each host four times, in turn: eight attempts per request, four on each host.
        conf = tmp / "nginx.conf"
        conf.write_text(config(tmp, [f"{NET}.{i}.2:{PORT}" for _ in range(4) for i in (1, 2)],
                               f"127.0.0.1:{FRONT_PORT}", IDLE_TIMEOUT - 1))
        self.proc = subprocess.Popen(in_ns(ns, str(NGINX), "-p", str(tmp), "-c", str(conf),
                                           "-e", str(tmp / "error.log")),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)


def host(ns: str, index: int) -> ServeProcess:
    command = in_ns(ns, sys.executable, "-m", "fastloop", "serve")
    return ServeProcess(["serve_apps:app", "--host", f"{NET}.{index}.2", "--port", str(PORT),
                         "-w", "2", "--timeout-keep-alive", str(IDLE_TIMEOUT),
                         "--timeout-graceful-shutdown", "10"],
                        ready_workers=2, command=command)


def probe(ns: str) -> bool:
    """One request through nginx, from inside the front namespace."""
    code = (f"import http.client; c = http.client.HTTPConnection('127.0.0.1', {FRONT_PORT}, "
            "timeout=2); c.request('GET', '/pid'); r = c.getresponse(); r.read(); "
            "raise SystemExit(r.status != 200)")
    return subprocess.run(in_ns(ns, sys.executable, "-c", code), capture_output=True,
                          timeout=10).returncode == 0


def test_nginx_over_two_hosts_sighup_each_then_stop_one(namespaces, tmp_path):
    a, b = host(namespaces["a"], 1), host(namespaces["b"], 2)
    nginx = None
    load = None
    try:
        a.start(timeout=20)
        b.start(timeout=20)
        nginx = Nginx(namespaces["front"], tmp_path)
        assert wait_until(lambda: probe(namespaces["front"]), 10.0), nginx.error_log()
        load = subprocess.Popen(
            in_ns(namespaces["front"], sys.executable, os.path.join(HERE, "scaleout_client.py"),
                  "127.0.0.1", str(FRONT_PORT), "60", "4"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env_importing_this_fastloop())
        time.sleep(1.0)
        a.signal(signal.SIGHUP)
        a.wait_for("is accepting", 4, timeout=STEP_TIMEOUT)  # 2 at start, 2 successors
        time.sleep(0.5)
        b.signal(signal.SIGHUP)
        b.wait_for("is accepting", 4, timeout=STEP_TIMEOUT)
        time.sleep(0.5)
        b.signal(signal.SIGTERM)
        assert b.wait(STEP_TIMEOUT) == 0, b.log()
        time.sleep(1.0)  # load on A alone
        load.send_signal(signal.SIGTERM)
        out, err = load.communicate(timeout=30)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait(5)
        if nginx is not None:
            nginx.stop()
        a.stop()
        b.stop()
    result = json.loads(out.strip().splitlines()[-1])
    status = {int(k): v for k, v in result["status"].items()}
    assert result["failed"] == 0, (result["failures"], nginx.error_log())
    assert set(status) == {200}, (status, nginx.error_log())
    assert status[200] > 100, status
    pids_a = {str(p) for p in a.worker_pids()}
    pids_b = {str(p) for p in b.worker_pids()}
    served = set(result["pids"])
    assert served & pids_a and served & pids_b, (served, pids_a, pids_b)
    assert served <= pids_a | pids_b
    # Each host's replaced workers and their successors all answered some of the load.
    assert len(served & pids_a) >= 3 and len(served & pids_b) >= 3, (served, pids_a, pids_b)
