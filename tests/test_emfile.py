"""Out of descriptors: a server whose process may open only NOFILE descriptors is flooded with
more connections than that. It must keep running without spinning (an edge-triggered listener
left with connections it cannot accept either stalls or, level-triggered, busy-loops), shed
what it cannot hold, count the EMFILE errors, and serve again once descriptors are free.

The server runs in a subprocess (tests/fd_limited_server.py) so that the low limit is its own.
"""

from __future__ import annotations

import errno
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import List

import pytest

from helpers import LOOPBACK, env_importing_this_fastloop, raw_request, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_SCRIPT = os.path.join(HERE, "fd_limited_server.py")
NOFILE = 64             # the server's soft limit: a few dozen connections
FLOOD = 200             # client connections held open at once, well past NOFILE
REQUEST = b"GET / HTTP/1.1\r\nHost: emfile.test\r\nConnection: close\r\n\r\n"
FLOOD_ROUNDS = 5       # each flood is a new chance for threads to race over descriptors
IDLE_CPU_LIMIT = 0.15   # seconds of CPU the server may use over one second of held flood

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads CPU time from /proc/PID/stat")


class ServerProcess:
    """fd_limited_server.py in a subprocess: JSON lines out, commands in. close() ends it by
    PID (SIGKILL if it did not exit on its own)."""

    def __init__(self, nofile: int, threads: int, dispatch: str, stderr_path: str) -> None:
        env = env_importing_this_fastloop()
        self.stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER_SCRIPT, "--nofile", str(nofile), "--runtime-threads", str(threads),
             "--dispatch", dispatch],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.pid = self.proc.pid
        self._buf = b""
        hello = self.read_json(timeout=10.0)
        self.port = hello["port"]

    def read_json(self, timeout: float) -> dict:
        """The next JSON line from the server, waiting at most timeout seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from the server within {timeout}s: {self._buf!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError(f"the server exited (status {self.proc.poll()}); "
                                   f"stderr: {self.stderr_text()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, cmd: str, timeout: float = 5.0) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        return self.read_json(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (all its threads)."""
        with open(f"/proc/{self.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # After "pid (comm)": fields[0] is field 3 (state); utime and stime are fields 14, 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr_text(self) -> str:
        self.stderr.flush()
        with open(self.stderr.name, "rb") as f:
            return f.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5.0)
        finally:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.stderr.close()


def close_all(socks: List[socket.socket]) -> None:
    for sock in socks:
        sock.close()
    socks.clear()


def flood(port: int, count: int, timeout: float = 3.0) -> List[socket.socket]:
    """Opens count idle connections at once: every connect is issued before any completes, so
    the server meets them as one burst (as a real flood arrives), several per listener event.
    Returns the connected sockets once the kernel completed every handshake."""
    socks: List[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setblocking(False)
            rc = sock.connect_ex((LOOPBACK, port))
            assert rc in (0, errno.EINPROGRESS), os.strerror(rc)
            sel.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while sel.get_map():
            left = deadline - time.monotonic()
            assert left > 0, f"{len(sel.get_map())} of {count} connects did not complete"
            for key, _ in sel.select(left):
                sel.unregister(key.fileobj)
                err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert err == 0, os.strerror(err)
    except BaseException:
        close_all(socks)
        raise
    finally:
        sel.close()
    return socks


def ok_answer(data: bytes) -> bool:
    return data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nHello")


@pytest.mark.parametrize("threads,dispatch", [(1, "reuseport"), (2, "reuseport"), (1, "acceptor"),
                                              (2, "acceptor")])
def test_server_survives_descriptor_exhaustion(tmp_path, threads: int, dispatch: str) -> None:
    server = ServerProcess(NOFILE, threads, dispatch, str(tmp_path / "server.stderr"))
    clients: List[socket.socket] = []
    made = 0  # connections the test established: each must end up accepted by the server

    def stats() -> dict:
        return server.command("stats")

    try:
        # Before the flood: it serves.
        assert ok_answer(raw_request(server.port, REQUEST, timeout=2.0))
        made += 1

        for round_ in range(FLOOD_ROUNDS):
            # The flood. The server can hold fewer than NOFILE of these connections; the rest
            # it must accept and close at once (shed), none left waiting in a backlog: once
            # out of descriptors, no new edge would come for them.
            clients = flood(server.port, FLOOD)
            made += FLOOD
            assert wait_until(lambda: stats()["accepted"] == made, timeout=2.0, interval=0.05), \
                f"round {round_}: {made - stats()['accepted']} connections stranded: {stats()}"

            # A connection made while out of descriptors is shed at once, not left waiting.
            t0 = time.monotonic()
            answer = raw_request(server.port, REQUEST, timeout=3.0)
            made += 1
            assert answer == b"" and time.monotonic() - t0 < 2.0, (round_, answer)

            if round_ == 0:
                # Held flood, nothing to do: alive and idle, not spinning on a listener it
                # cannot drain (what a level-triggered listener without the reserve would do).
                cpu0 = server.cpu_seconds()
                time.sleep(1.0)
                used = server.cpu_seconds() - cpu0
                assert server.proc.poll() is None, server.stderr_text()
                assert used < IDLE_CPU_LIMIT, f"{used:.2f}s of CPU in 1s of idle flood"
                during = stats()
                assert during["accept_errors"].get("EMFILE", 0) > 0, during
                assert during["shed"] > 0, during

            # Descriptors free up: the server sees every client close and serves again.
            close_all(clients)
            assert wait_until(lambda: stats()["open"] == 0, timeout=3.0, interval=0.05), stats()
            answer = raw_request(server.port, REQUEST, timeout=2.0)
            made += 1
            assert ok_answer(answer), (round_, answer)

        st = stats()
        assert st["accepted"] == st["closed"] + st["open"], st

        final = server.command("quit")
        server.proc.wait(timeout=5.0)
        assert server.proc.returncode == 0, server.stderr_text()
        assert final["accepted"] == made, (made, final)
        assert final["accepted"] == final["closed"] and final["open"] == 0, final
        assert final["accept_errors"].get("EMFILE", 0) > 0, final
        # Every round, at least the part of the flood beyond NOFILE was shed.
        assert final["shed"] >= FLOOD_ROUNDS * (FLOOD - NOFILE), final
    finally:
        close_all(clients)
        server.close()
