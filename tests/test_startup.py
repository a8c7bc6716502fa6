"""`fastloop serve` when it cannot start: one line naming the address or path, no traceback,
exit status 3 (uvicorn's STARTUP_FAILURE); a busy port is refused unless --reuse-port asks to
share it; Unix socket files: their mode, and what is (not) removed; --version."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import pytest
from helpers import env_importing_this_fastloop
from serving import HERE, ServeProcess, get
from test_processes import pids_seen

import fastloop


def serve(*args, env=None, command=None, timeout=30, app="serve_apps:app"):
    """Runs `fastloop serve APP ARGS` to its end; the CompletedProcess."""
    full_env = env_importing_this_fastloop()
    full_env.update(env or {})
    command = command or [sys.executable, "-m", "fastloop"]
    return subprocess.run([*command, "serve", app, *args], cwd=HERE, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def expect_startup_failure(out, *fragments):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 3, out.stderr
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def busy_port():
    """A port where a plain socket listens (no SO_REUSEPORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_status_3(busy_port, workers):
    out = serve("--port", str(busy_port), "-w", workers)
    expect_startup_failure(out, f"127.0.0.1:{busy_port}", "address already in use")


@pytest.mark.parametrize("dispatch", ["reuseport", "acceptor"])
def test_a_second_fastloop_on_a_busy_port_is_refused(dispatch):
    with ServeProcess(["serve_apps:app", "--port", "0", "--dispatch", dispatch]) as first:
        out = serve("--port", str(first.port), "--dispatch", dispatch)
        expect_startup_failure(out, f"127.0.0.1:{first.port}", "address already in use")
        assert int(get(first.url, "/pid")) == first.pid  # the first one still serves alone
        first.signal(signal.SIGTERM)
        assert first.wait(10) == 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_reuse_port_shares_a_busy_port_when_asked(how):
    with ServeProcess(["serve_apps:app", "--port", "0"]) as first:
        args = ["serve_apps:app", "--port", str(first.port)]
        env = {}
        if how == "flag":
            args.append("--reuse-port")
        else:
            env["FASTLOOP_REUSE_PORT"] = "1"
        with ServeProcess(args, env=env) as second:
            # The kernel spreads new connections over both SO_REUSEPORT listeners.
            assert pids_seen(first.url, 2) == {first.pid, second.pid}
            second.signal(signal.SIGTERM)
            assert second.wait(10) == 0
        first.signal(signal.SIGTERM)
        assert first.wait(10) == 0


@pytest.mark.parametrize("args,fragments", [
    (["--host", "nope.invalid"], ["cannot use host 'nope.invalid'"]),
    (["--host", "192.0.2.1", "--port", "8123"], ["192.0.2.1:8123", "address not available"]),
    (["--fd", "97"], ["--fd 97: not a socket"]),
    (["--uds", "/nonexistent-dir-of-fastloop/s.sock"],
     ["/nonexistent-dir-of-fastloop/s.sock", "does not exist"]),
])
def test_startup_failures_name_the_address(args, fragments):
    expect_startup_failure(serve(*args), *fragments)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_metrics_port_in_use_is_one_line_and_status_3(busy_port, workers):
    out = serve("--port", "0", "-w", workers, "--metrics", "--metrics-port", str(busy_port))
    expect_startup_failure(out, "metrics listener", f"127.0.0.1:{busy_port}",
                           "address already in use")


@pytest.mark.parametrize("args,fragments", [
    (["--metrics-address", "nope.invalid"], ["metrics listener", "cannot use host 'nope.invalid'"]),
    (["--metrics-address", "192.0.2.1", "--metrics-port", "9123"],
     ["metrics listener", "192.0.2.1:9123", "address not available"]),
])
def test_a_metrics_address_that_cannot_be_bound_is_one_line(args, fragments):
    expect_startup_failure(serve("--port", "0", "--metrics", *args), *fragments)


def test_the_metrics_port_is_checked_before_the_app_is_imported(busy_port, tmp_path):
    # Bound with the serving sockets: an application that takes long to import (or starts
    # threads) is never loaded when the server could not run anyway.
    marker = tmp_path / "imported"
    (tmp_path / "marking_app.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom serve_apps import app\n")
    path = f"{tmp_path}{os.pathsep}{env_importing_this_fastloop()['PYTHONPATH']}"
    out = serve("--port", "0", "--metrics", "--metrics-port", str(busy_port),
                env={"PYTHONPATH": path}, app="marking_app:app")
    expect_startup_failure(out, "metrics listener", "address already in use")
    assert not marker.exists()


def test_an_fd_that_is_a_file_not_a_socket(tmp_path):
    with open(tmp_path / "f", "w") as f:
        fd = f.fileno()
        out = subprocess.run([sys.executable, "-m", "fastloop", "serve", "serve_apps:app",
                              "--fd", str(fd)], cwd=HERE, env=env_importing_this_fastloop(),
                             capture_output=True, text=True, timeout=30, pass_fds=[fd])
    expect_startup_failure(out, f"--fd {fd}: not a socket")


def _nobody_python():
    """A command running Python as the user nobody that imports this fastloop, or None."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        return None
    drop = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    # The interpreter running the tests may live under a home directory nobody cannot read;
    # the system one of the same version loads the same extension.
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
    for python in candidates:
        try:
            ok = subprocess.run([*drop, python, "-c", "import fastloop"], cwd="/",
                                env=env_importing_this_fastloop(), capture_output=True,
                                timeout=20).returncode == 0
        except OSError:
            ok = False
        if ok:
            return [*drop, python]
    return None


def test_permission_denied_on_a_low_port_as_another_user():
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 80:
            pytest.skip("this kernel lets every user bind port 80")
    python = _nobody_python()
    if python is None:
        pytest.skip("cannot run this fastloop as the user nobody (needs root and setpriv)")
    out = serve("--port", "80", command=[*python, "-m", "fastloop"])
    expect_startup_failure(out, "127.0.0.1:80", "permission denied")


# ---- Unix sockets ---------------------------------------------------------------------------

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("args,mode", [([], 0o666), (["--uds-perms", "660"], 0o660),
                                       (["--uds-perms", "0o600"], 0o600)])
def test_unix_socket_mode(tmp_path, args, mode):
    path = str(tmp_path / "s.sock")
    with ServeProcess(["serve_apps:app", "--uds", path, *args]) as srv:
        assert stat.S_ISSOCK(os.stat(path).st_mode) and _mode(path) == mode
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    assert not os.path.exists(path)


def test_another_user_can_connect_to_the_default_mode():
    python = _nobody_python()
    if python is None:
        pytest.skip("cannot run Python as the user nobody (needs root and setpriv)")
    folder = tempfile.mkdtemp(prefix="fastloop-uds-")  # pytest's tmp_path is private to root
    try:
        os.chmod(folder, 0o755)
        _serve_to_nobody(python, os.path.join(folder, "s.sock"))
    finally:
        shutil.rmtree(folder)


def _serve_to_nobody(python, path):
    client = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
              "s.sendall(b'GET /items/5 HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n');"
              "print(s.recv(4096).decode().split()[-1])")
    with ServeProcess(["serve_apps:app", "--uds", path]) as srv:
        out = subprocess.run([*python, "-c", client, path], cwd="/", capture_output=True,
                             text=True, timeout=20)
        assert out.stdout.strip() == "5", out.stderr
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0


def test_a_path_that_is_not_a_socket_is_never_removed(tmp_path):
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    expect_startup_failure(serve("--uds", str(path)), str(path), "not a socket; not removing it")
    assert path.read_text() == "keep me"
    folder = tmp_path / "a-directory"
    folder.mkdir()
    expect_startup_failure(serve("--uds", str(folder)), str(folder), "not a socket")
    assert folder.is_dir()


def test_a_stale_socket_is_replaced(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as old:  # bound, then closed: nobody listens there
        old.bind(path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with ServeProcess(["serve_apps:app", "--uds", path]) as srv:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /items/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(4096).endswith(b"item 7")
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0


def test_a_live_socket_is_refused_and_left_alone(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen(4)
        expect_startup_failure(serve("--uds", path), path, "another server is listening")
        with socket.socket(socket.AF_UNIX) as s:  # still the live server's socket
            s.settimeout(5)
            s.connect(path)
            conn, _ = live.accept()
            conn.close()


def test_server_api_refuses_a_regular_file_too(tmp_path):
    path = tmp_path / "data"
    path.write_text("x")
    server = fastloop.Server(fastloop.App(), uds=str(path))
    with pytest.raises(OSError, match="not a socket"):
        server.start()
    assert path.read_text() == "x"


# ---- --version ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--version"], ["serve", "--version"]])
def test_version(argv):
    out = subprocess.run([sys.executable, "-m", "fastloop", *argv], cwd=HERE,
                         env=env_importing_this_fastloop(), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == f"fastloop {fastloop.__version__}"
