"""The kqueue backend, built on Linux against libkqueue and served from a subprocess.

fastloop picks its readiness backend at compile time (fastloop/core/poller.h): Linux builds get
epoll, so the kqueue code that BSD and macOS run would go untested here. With libkqueue (a
userspace kqueue over epoll) installed, this module builds a second copy of fastloop with
FASTLOOP_POLLER=kqueue into a temporary directory (never touching the build under test
elsewhere), then drives servers of that copy in subprocesses, in both dispatch modes.

It skips unless libkqueue is found: by ctypes.util.find_library("kqueue") (headers then come
from the system include directories, CFLAGS / CPPFLAGS -I, CPATH or C_INCLUDE_PATH), or under
FASTLOOP_LIBKQUEUE_PREFIX (its include/ and lib/, as `cmake -DCMAKE_INSTALL_PREFIX=...`
installs them). On BSD and macOS the normal build already is the kqueue one.

Everything is bounded: the build, each server's start and stop, and each socket operation have
timeouts, and a server subprocess is killed by its PID if it does not stop in time (it also
exits by itself after SERVER_LIFETIME seconds).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import dataclasses
import importlib.util
import json
import os
import resource
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"

BUILD_TIMEOUT = 300.0    # seconds for cythonize + compile of the kqueue copy
START_TIMEOUT = 60.0     # a server subprocess must report its port within this
STOP_TIMEOUT = 30.0      # ... and its final counters within this after being told to stop
SERVER_LIFETIME = 240.0  # a server subprocess exits by itself after this, whatever happens
IO_TIMEOUT = 10.0        # any single client socket operation
BURST = 200              # concurrent connections of one burst
WIDE_BURST = 640         # ... of the burst meant to overflow a wait's event list
SLEEPERS = 4             # requests to /sleep that keep both workers busy meanwhile
SLEEP = 0.5              # seconds each of them sleeps

STATIC_BODY = b"Hello from kqueue"
PY_BODY = b"hi from python"
BIG_BODY = bytes(range(256)) * (4 * 4096)  # 4 MiB: needs many writable edges to go out

# Runs in the subprocess: argv[1] is the dispatch mode, argv[2] the directory the kqueue copy
# of fastloop must come from, argv[3] the seconds after which it exits whatever happens. Prints
# one JSON line when serving and one with the counters after stopping; stops when a line (or
# EOF) arrives on stdin. ServerProcess prepends the definitions of the bodies and SLEEP.
SERVER_SCRIPT = r'''
import json, os, resource, sys, threading, time

# Room for the widest burst whatever the soft limit was (the hard limit is not raised).
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

def give_up():
    sys.stderr.write("kqueue test server: lifetime exceeded, exiting\n")
    sys.stderr.flush()
    os._exit(3)

watchdog = threading.Timer(float(sys.argv[3]), give_up)
watchdog.daemon = True
watchdog.start()

import fastloop

dispatch, root = sys.argv[1], os.path.realpath(sys.argv[2])
if not os.path.realpath(fastloop.__file__).startswith(root + os.sep):
    sys.exit(f"imported fastloop from {fastloop.__file__}, not from the kqueue build in {root}")

app = fastloop.App()
app.static("/", STATIC_BODY)
app.static("/big", BIG_BODY, content_type="application/octet-stream")

@app.route("/py")
def py(req):
    return PY_BODY.decode()

@app.route("/sleep")
def sleep(req):
    time.sleep(SLEEP)  # holds this worker: its sockets' events pile up meanwhile
    return "slept"

server = fastloop.Server(app, host="127.0.0.1", port=0, runtime_threads=2, dispatch=dispatch)
server.start()
print(json.dumps({"poller": fastloop.POLLER, "port": server.port, "module": fastloop.__file__}),
      flush=True)
sys.stdin.readline()
server.stop(timeout=5.0)
stats = server.stats()
stats.pop("workers", None)
print(json.dumps(stats), flush=True)
'''


# ---- finding libkqueue and building the kqueue copy -------------------------------------------


@dataclasses.dataclass
class KqueueBuild:
    root: Path            # the copy of the source tree, with fastloop/_core*.so built in place
    env: Dict[str, str]   # environment that imports that copy and finds libkqueue at run time


def _include_dirs_from_env() -> List[str]:
    dirs: List[str] = []
    for var in ("CFLAGS", "CPPFLAGS"):
        args = shlex.split(os.environ.get(var, ""))
        for i, arg in enumerate(args):
            if arg in ("-I", "-isystem") and i + 1 < len(args):
                dirs.append(args[i + 1])
            elif arg.startswith("-I") and len(arg) > 2:
                dirs.append(arg[2:])
    for var in ("CPATH", "C_INCLUDE_PATH"):
        dirs += [d for d in os.environ.get(var, "").split(os.pathsep) if d]
    return dirs + ["/usr/local/include", "/usr/include"]


def _has_kqueue_header(include_dir: str) -> bool:
    # libkqueue installs <include>/kqueue/sys/event.h; setup.py adds the kqueue/ directory.
    return any(os.path.isfile(os.path.join(include_dir, *parts))
               for parts in (("kqueue", "sys", "event.h"), ("sys", "event.h")))


def find_libkqueue() -> Tuple[Dict[str, str], List[str]]:
    """Returns (build environment additions, library directories to add at run time), or skips
    the test with the reason libkqueue cannot be used."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the libkqueue build is for Linux; here the regular build is the kqueue one")
    if importlib.util.find_spec("Cython") is None:
        pytest.skip("building the kqueue variant needs Cython importable in this environment")
    prefix = os.environ.get("FASTLOOP_LIBKQUEUE_PREFIX")
    if prefix:
        include = os.path.join(prefix, "include")
        libdirs = [os.path.join(prefix, d) for d in ("lib", "lib64")
                   if any(f.startswith("libkqueue.so") or f == "libkqueue.a"
                          for f in _listdir(os.path.join(prefix, d)))]
        if not _has_kqueue_header(include):
            pytest.skip(f"FASTLOOP_LIBKQUEUE_PREFIX={prefix} has no include/kqueue/sys/event.h")
        if not libdirs:
            pytest.skip(f"FASTLOOP_LIBKQUEUE_PREFIX={prefix} has no lib/libkqueue.so")
        extra = {
            "CFLAGS": _join_flags(os.environ.get("CFLAGS"), f"-I{include}"),
            "LDFLAGS": _join_flags(os.environ.get("LDFLAGS"), *(f"-L{d}" for d in libdirs)),
        }
        return extra, libdirs
    if ctypes.util.find_library("kqueue") is None:
        pytest.skip("libkqueue not found: ctypes.util.find_library('kqueue') found nothing and "
                    "FASTLOOP_LIBKQUEUE_PREFIX is not set (build libkqueue and point it there)")
    if not any(_has_kqueue_header(d) for d in _include_dirs_from_env()):
        pytest.skip("libkqueue is installed but not its headers (kqueue/sys/event.h): install "
                    "them, pass -I<dir> in CFLAGS, or set FASTLOOP_LIBKQUEUE_PREFIX")
    libdirs = [d for d in os.environ.get("LIBRARY_PATH", "").split(os.pathsep) if d]
    return {}, libdirs


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _join_flags(existing: Optional[str], *flags: str) -> str:
    return " ".join(([existing] if existing else []) + list(flags))


def _join_paths(*paths: Optional[str]) -> str:
    return os.pathsep.join(p for p in paths if p)


def _copy_source(dest: Path) -> None:
    for name in ("setup.py", "pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "fastloop", dest / "fastloop",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "_core.c", "*.html",
                                                  "__pycache__", "build"))


def _run_bounded(cmd: List[str], cwd: Path, env: Dict[str, str], log: Path,
                 timeout: float) -> Optional[int]:
    """Runs cmd with its output in log; returns its exit status, or None if it was killed
    (with all it started: it leads its own process group) after timeout seconds."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its group: the compiler it may be running
            proc.wait(timeout=10)
            return None


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


@pytest.fixture(scope="session")
def kqueue_build(tmp_path_factory: pytest.TempPathFactory) -> KqueueBuild:
    build_env, libdirs = find_libkqueue()
    root = tmp_path_factory.mktemp("kqueue-build")
    _copy_source(root)
    env = dict(os.environ, FASTLOOP_POLLER="kqueue", **build_env)
    log = root / "build.log"
    status = _run_bounded([sys.executable, "setup.py", "build_ext", "--inplace"], root, env, log,
                          BUILD_TIMEOUT)
    if status is None:
        pytest.fail(f"the kqueue build took over {BUILD_TIMEOUT:.0f}s; its log ends:\n{_tail(log)}")
    if status != 0:
        pytest.fail(f"the kqueue build failed ({status}); its log ends:\n{_tail(log)}")
    if not list((root / "fastloop").glob("_core*.so")):
        pytest.fail(f"the kqueue build made no fastloop/_core*.so; its log ends:\n{_tail(log)}")
    run_env = dict(os.environ)
    run_env["PYTHONPATH"] = _join_paths(str(root), os.environ.get("PYTHONPATH"))
    run_env["LD_LIBRARY_PATH"] = _join_paths(*libdirs, os.environ.get("LD_LIBRARY_PATH"))
    return KqueueBuild(root=root, env=run_env)


# ---- a server of the kqueue build, in a subprocess ---------------------------------------------


class ServerProcess:
    """One fastloop server of the kqueue build running in a subprocess."""

    def __init__(self, build: KqueueBuild, dispatch: str, workdir: Path) -> None:
        script = workdir / "kq_server.py"
        script.write_text(f"STATIC_BODY = {STATIC_BODY!r}\nPY_BODY = {PY_BODY!r}\n"
                          f"BIG_BODY = bytes(range(256)) * {len(BIG_BODY) // 256}\n"
                          f"SLEEP = {SLEEP!r}\n" + SERVER_SCRIPT)
        self.stderr_path = workdir / "kq_server.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self._buf = b""
        self.connections = 0  # what the tests made, checked against the server's counters
        self.requests = 0
        self.proc = subprocess.Popen(
            [sys.executable, str(script), dispatch, str(build.root), str(SERVER_LIFETIME)],
            cwd=workdir, env=build.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr)
        try:
            self.info = self._read_json(START_TIMEOUT, "start")
        except BaseException:
            self.kill()
            raise
        self.port: int = self.info["port"]

    def _read_json(self, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"server subprocess: no {what} report in {timeout:.0f}s; "
                                         f"stderr:\n{_tail(self.stderr_path)}")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=10)
                    raise AssertionError(f"server subprocess exited ({self.proc.returncode}) "
                                         f"before its {what} report; stderr:\n"
                                         f"{_tail(self.stderr_path)}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def stop(self) -> dict:
        """Tells the server to stop and returns its final counters."""
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
            stats = self._read_json(STOP_TIMEOUT, "stop")
            self.proc.wait(timeout=STOP_TIMEOUT)
            assert self.proc.returncode == 0, f"stderr:\n{_tail(self.stderr_path)}"
            return stats
        finally:
            self.kill()

    def kill(self) -> None:
        """Ends the subprocess by its PID if it still runs; safe to call more than once."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            with contextlib.suppress(OSError):
                f.close()


@pytest.fixture(params=["reuseport", "acceptor"])
def server(request: pytest.FixtureRequest, kqueue_build: KqueueBuild, tmp_path: Path):
    """A running kqueue server (runtime_threads=2) in the parametrized dispatch mode; killed after the
    test unless the test stopped it with stop_and_check."""
    srv = ServerProcess(kqueue_build, request.param, tmp_path)
    try:
        assert srv.info["poller"] == "kqueue", srv.info
        yield srv
    finally:
        srv.kill()


def stop_and_check(srv: ServerProcess) -> None:
    """Stops the server; its counters must balance, every accepted connection closed, and
    cover what the test did."""
    stats = srv.stop()
    assert stats["accepted"] == stats["closed"] + stats["open"], stats
    assert stats["open"] == 0, stats
    assert stats["accepted"] >= srv.connections, (srv.connections, stats)
    assert stats["requests"] >= srv.requests, (srv.requests, stats)


# ---- a small HTTP/1.1 client ------------------------------------------------------------------


class Client:
    """One keep-alive connection that reads Content-Length framed responses."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.sock = socket.create_connection((LOOPBACK, srv.port), timeout=IO_TIMEOUT)
        self.buf = b""
        srv.connections += 1

    def send(self, *paths: str, close: bool = False) -> None:
        """Sends one request per path in a single write (a pipeline when there are several);
        close=True asks for the connection to be closed after the last one."""
        reqs = []
        for i, path in enumerate(paths):
            conn = "Connection: close\r\n" if close and i == len(paths) - 1 else ""
            reqs.append(f"GET {path} HTTP/1.1\r\nHost: kq.test\r\n{conn}\r\n")
        self.sock.sendall("".join(reqs).encode())
        self.srv.requests += len(paths)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise AssertionError(f"connection closed with {len(self.buf)} bytes of a response")
        self.buf += chunk

    def response(self) -> Tuple[int, Dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def expect(self, body: bytes) -> None:
        status, _, got = self.response()
        assert status == 200 and got == body, (status, got[:100])

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def nofile_at_least(count: int):
    """Raises this process's soft descriptor limit to count for the block, or skips."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- the tests --------------------------------------------------------------------------------


def test_keep_alive_requests_static_and_python(server: ServerProcess) -> None:
    client = Client(server)
    try:
        for i in range(20):
            path, body = ("/py", PY_BODY) if i % 2 else ("/", STATIC_BODY)
            client.send(path)
            client.expect(body)
    finally:
        client.close()
    stop_and_check(server)


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    paths = ["/", "/py", "/", "/", "/py", "/py"] * 10
    client = Client(server)
    try:
        client.send(*paths)
        for path in paths:
            client.expect(PY_BODY if path == "/py" else STATIC_BODY)
        client.send("/")  # the connection is still usable after the pipeline
        client.expect(STATIC_BODY)
    finally:
        client.close()
    stop_and_check(server)


def test_bursts_of_concurrent_connections_are_all_answered(server: ServerProcess) -> None:
    # Two waves: the second gets the descriptor numbers the first one's connections had (the
    # knotes libkqueue keeps for them must not swallow the new connections' events).
    for _ in range(2):
        clients: List[Client] = []
        try:
            for _ in range(BURST):
                clients.append(Client(server))
            for i, client in enumerate(clients):
                client.send("/py" if i % 10 == 0 else "/")
            for i, client in enumerate(clients):
                client.expect(PY_BODY if i % 10 == 0 else STATIC_BODY)
        finally:
            for client in clients:
                client.close()
    stop_and_check(server)


def test_more_ready_sockets_than_one_wait_returns(server: ServerProcess) -> None:
    # While both workers sleep in a handler, every connection of a wide burst gets a request,
    # so each worker then finds a few hundred sockets ready at once, each readable and
    # writable: more kevents than one wait may return (libkqueue dropped the rest, see
    # poller_kqueue.h). Every one must still be answered.
    with nofile_at_least(WIDE_BURST + SLEEPERS + 256):
        clients: List[Client] = []
        try:
            for _ in range(WIDE_BURST):
                clients.append(Client(server))
            sleepers = [Client(server) for _ in range(SLEEPERS)]
            clients += sleepers
            for sleeper in sleepers:
                sleeper.send("/sleep")
            time.sleep(SLEEP / 2)  # the handlers have started
            for client in clients[:WIDE_BURST]:
                client.send("/")
            for sleeper in sleepers:
                sleeper.expect(b"slept")
            for client in clients[:WIDE_BURST]:
                client.expect(STATIC_BODY)
        finally:
            for client in clients:
                client.close()
    stop_and_check(server)


def test_many_short_connections_in_a_row(server: ServerProcess) -> None:
    # Each connection closes before the next opens, so the server gets the same descriptor
    # number back again and again.
    for _ in range(100):
        client = Client(server)
        try:
            client.send("/", close=True)
            client.expect(STATIC_BODY)
        finally:
            client.close()
    stop_and_check(server)


def test_half_closed_client_is_answered_and_closed_at_once(server: ServerProcess) -> None:
    for _ in range(5):
        client = Client(server)
        try:
            client.send("/")
            client.sock.shutdown(socket.SHUT_WR)  # request and FIN arrive together
            started = time.monotonic()
            client.expect(STATIC_BODY)
            assert client.sock.recv(1) == b"", "no EOF after the answer"
            # Without EV_EOF for the FIN the server would keep the connection until a timeout.
            assert time.monotonic() - started < 2.0
        finally:
            client.close()
    stop_and_check(server)


def test_large_response_goes_out_over_many_writable_events(server: ServerProcess) -> None:
    client = Client(server)
    try:
        client.send("/big")
        time.sleep(0.2)  # let the server fill the socket buffers and wait for writability
        client.expect(BIG_BODY)
        client.send("/")
        client.expect(STATIC_BODY)
    finally:
        client.close()
    stop_and_check(server)
