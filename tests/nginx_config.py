"""nginx for tests: where it is installed, and the reverse-proxy config that
tests/test_proxy_nginx.py and tests/test_scaleout.py run it with (the one docs/reliability.md
recommends), everything it writes kept under the test's own directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

__all__ = ["NGINX", "SBIN_PATH", "config"]

# nginx and ip live in sbin, which is not on every user's PATH.
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
NGINX = shutil.which("nginx", path=SBIN_PATH)

_CONFIG = """
daemon off;
master_process off;    # one process: the PID the test started is all there is to stop
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream fastloop {{
        # Eight entries, eight attempts: nginx tries each entry at most once per request, and
        # during a restart its keep-alive cache may hand one request several connections the
        # old server has just closed as idle, one after another (or one still in the old
        # server's listen backlog). max_fails=0: a restart must not get the server marked down.
{servers}
        keepalive 32;
        keepalive_timeout {keepalive_timeout}s;   # < fastloop's idle timeout
    }}
    server {{
        listen {listen};
        keepalive_requests 100000;
        location / {{
            proxy_pass http://fastloop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 8;
            proxy_next_upstream_timeout 5s;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }}
    }}
}}
"""


def config(tmp: Path, upstreams: Sequence[str], listen: str, keepalive_timeout: int) -> str:
    """The nginx.conf text: upstreams ("host:port", each entry given as many times as it
    should appear, eight in all for eight attempts) behind `listen`."""
    servers = "".join(f"        server {u} max_fails=0;\n" for u in upstreams)
    return _CONFIG.format(tmp=tmp, servers=servers.rstrip("\n"), listen=listen,
                          keepalive_timeout=keepalive_timeout)
