"""The peer servers of the suite: their virtual environment, installation and command lines.

``install(venv)`` creates benchmarks/.venv (gitignored) with the running Python and
pip-installs each peer there, one at a time, so one failure skips that peer only; bjoern first
needs libev's headers, which are installed with apt-get when missing and this is root. The
outcome of every peer (installed, or why not) is written to .venv/peers.json and read back by
``status(venv)`` on later runs.

``commands(...)`` gives the command line, working directory and environment of each server;
the applications they serve are in apps.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv as _venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE / ".venv"

# name -> (pip requirements, module that must import afterwards)
PEERS = {
    "granian": (["granian"], "granian"),
    "uvicorn": (["uvicorn[standard]"], "uvicorn, uvloop, httptools"),
    "socketify": (["socketify"], "socketify"),
    "bjoern": (["bjoern"], "bjoern"),
    "fastpysgi": (["fastpysgi"], "fastpysgi"),
    "mrhttp": (["mrhttp", "mrpacker"], "mrhttp"),  # mrhttp imports mrpacker, undeclared
    "gunicorn": (["gunicorn"], "gunicorn"),
    "hypercorn": (["hypercorn", "uvloop"], "hypercorn, uvloop"),
    "fastapi": (["fastapi"], "fastapi"),  # the app of the *-fastapi servers, not a server
    "matplotlib": (["matplotlib"], "matplotlib"),  # optional: the PNG chart
}


def python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip(venv: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(python(venv)), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout)


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "WARNING" not in ln]
    return " / ".join(lines[-n:])[-400:]


def _ensure_libev() -> str | None:
    """None if libev's header is there (or was just installed), else why not."""
    if Path("/usr/include/ev.h").exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "libev headers missing (apt-get install libev-dev, as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    res = subprocess.run(["apt-get", "install", "-y", "-q", "libev-dev"], capture_output=True,
                         text=True, env=env, timeout=600)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
        res = subprocess.run(["apt-get", "install", "-y", "-q", "libev-dev"], capture_output=True,
                             text=True, env=env, timeout=600)
    if res.returncode != 0:
        return f"apt-get install libev-dev failed: {_last_lines(res.stderr)}"
    return None


def install(venv: Path = DEFAULT_VENV, log=print, only: set | None = None) -> dict:
    """Create VENV if needed and install every peer (or those named in ONLY) into it; return
    {peer: status}. Peers left out keep the status of an earlier install."""
    if not python(venv).exists():
        log(f"creating {venv.name}/ with {sys.executable}")
        _venv.EnvBuilder(with_pip=True, clear=False).create(venv)
        _pip(venv, "install", "-q", "--upgrade", "pip", "wheel", "setuptools")
    saved = venv / "peers.json"
    status = json.loads(saved.read_text()) if saved.exists() else {}
    for name, (reqs, modules) in PEERS.items():
        if only is not None and name not in only:
            status.setdefault(name, {"installed": False, "why": "not installed yet: run "
                                     "--install-peers with a server that needs it"})
            continue
        why = _ensure_libev() if name == "bjoern" else None
        if why is None:
            log(f"pip install {' '.join(reqs)}")
            try:
                res = _pip(venv, "install", "-q", *reqs)
                if res.returncode != 0:
                    why = f"pip install failed: {_last_lines(res.stderr or res.stdout)}"
            except subprocess.TimeoutExpired:
                why = "pip install took over 10 minutes"
        if why is None:
            res = subprocess.run([str(python(venv)), "-c", f"import {modules}"],
                                 capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                why = f"installed but does not import: {_last_lines(res.stderr, 1)}"
        status[name] = {"installed": why is None, "why": why}
        if why:
            log(f"  {name}: skipped: {why}")
    saved.write_text(json.dumps(status, indent=1))
    return status


def status(venv: Path = DEFAULT_VENV) -> dict:
    """{peer: {"installed": bool, "why": str|None}} from the last install, or all missing."""
    if not python(venv).exists():
        why = f"no {venv.name}/ virtual environment: run with --install-peers"
        return {name: {"installed": False, "why": why} for name in PEERS}
    saved = venv / "peers.json"
    if saved.exists():
        return json.loads(saved.read_text())
    return {name: {"installed": True, "why": None} for name in PEERS}  # checked when started


def versions(venv: Path = DEFAULT_VENV) -> dict:
    """{distribution: version} of the packages in VENV."""
    if not python(venv).exists():
        return {}
    res = _pip(venv, "list", "--format", "json", timeout=120)
    try:
        return {p["name"].lower(): p["version"] for p in json.loads(res.stdout)}
    except (ValueError, KeyError):
        return {}


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {nofile}; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_max_body_size 4m;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = / {{ default_type text/plain; return 200 "Hello, World!"; }}
        location = /upload {{ default_type text/plain; return 200 "ok"; }}
        location = /download {{ default_type application/octet-stream; alias {prefix}/download.bin; }}
    }}
}}
"""


def nginx_command(port: int, prefix: Path, nofile: int) -> list[str]:
    """Write nginx's config, and the 1 MiB file it serves, under PREFIX; return its command."""
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)  # the worker may run as another user: it must read download.bin
    (prefix / "download.bin").write_bytes(b"x" * (1 << 20))
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, nofile=nofile))
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(prefix), "-e",
            str(prefix / "error.log"), "-c", str(conf)]


def peer_command(server: str, port: int, venv: Path) -> list[str]:
    """The command line of peer SERVER on PORT; its working directory must be benchmarks/.
    NAME-fastapi is server NAME (uvicorn, granian, hypercorn) serving apps.fastapi_app."""
    py = str(python(venv))
    base, _, variant = server.partition("-")
    asgi = "apps:fastapi_app" if variant == "fastapi" else "apps:asgi_app"
    if base == "granian":
        interface = "asgi" if variant == "fastapi" else variant
        app = asgi if interface == "asgi" else f"apps:{interface}_app"
        return [py, "-m", "granian", "--interface", interface, "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                "--blocking-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                "--backlog", "4096", app]
    if base == "uvicorn":
        return [py, "-m", "uvicorn", asgi, "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--lifespan", "off", "--backlog", "4096"]
    if base == "hypercorn":  # no access log unless asked for one
        # hypercorn evaluates the text after the colon in the module's namespace, which a module
        # __getattr__ does not serve: it calls the builder instead.
        app = "apps:build_fastapi_app()" if variant == "fastapi" else asgi
        return [py, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--worker-class", "uvloop", "--log-level", "warning", "--backlog", "4096", app]
    if server == "gunicorn":
        return [py, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", "--backlog", "4096", "apps:wsgi_app"]
    return [py, str(HERE / "apps.py"), server, str(port)]
