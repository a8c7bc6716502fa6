"""fastloop doctor: reads only, names each limit, and gives a fix for every warning."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys

import pytest

from fastloop import doctor

LINUX = sys.platform.startswith("linux")


def run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = doctor.main(argv)
    return rc, out.getvalue()


def test_text_report_names_every_limit():
    rc, out = run([])
    assert rc == 0
    for name in ("ulimit -n", "ephemeral port range", "TIME_WAIT sockets now",
                 "loopback source addresses"):
        assert name in out
    if LINUX:
        for name in ("somaxconn", "tcp_max_syn_backlog", "tcp_tw_reuse", "tcp_fin_timeout"):
            assert name in out


def test_json_every_warning_has_a_fix():
    rc, out = run(["--json"])
    assert rc == 0
    data = json.loads(out)
    assert data["checks"]
    for check in data["checks"]:
        assert check["verdict"] in ("ok", "warn", "info")
        if check["verdict"] == "warn":
            assert check["fix"], check["name"]


@pytest.mark.skipif(not LINUX, reason="/proc/net/tcp")
def test_time_wait_count_sees_a_new_time_wait_socket():
    # The side that closes first keeps TIME_WAIT: close the client first, on a port of our own.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        before = doctor.time_wait_count(port)
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        client.close()
        server.recv(1)  # EOF
        server.close()
    assert doctor.time_wait_count(port) == before + 1
    assert doctor.time_wait_count() >= 1


def test_port_range_and_loopback_sources():
    rng = doctor.port_range()
    if LINUX:
        assert rng is not None and 0 < rng[0] <= rng[1] <= 65535
    assert "127.0.0.1" in doctor.loopback_sources()
