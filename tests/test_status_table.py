"""One status table (core/status.h): every status the core answers by itself has its line, its
prebuilt answer and its log text, and a status is answered and counted as itself, never as
another (a 431 for oversized trailers is not a "request body too large")."""

from __future__ import annotations

import logging
import re
import socket
from http import HTTPStatus
from pathlib import Path

import pytest
from helpers import raw_request, running_server

import fastloop
from fastloop._core import FL_STATUSES, STATUS_TEXTS

CORE = Path(__file__).resolve().parent.parent / "fastloop" / "core"
H = b"Host: t\r\n"

# Where a status comes from in the core's sources: a parser result (a line of http*.pyx, or of
# ws_handshake.pyx for an upgrade, that returns or sets rc to it, or its negation), a rejection
# or a prebuilt error answer, a counter slot, a streaming body's end. Comments are left out.
PARSER_LINE = re.compile(r"^\s*(?:return|rc =)\s")
STATUS = re.compile(r"\b[45]\d\d\b")
CALLS = re.compile(r"\b(?:conn_reject\(self, c, |conn_put_error\(self, c, |fl_status_index\("
                   r"|fl_job_give_body\([^)]*, -)([45]\d\d)\)")


def produced_statuses() -> set:
    found = set()
    for path in CORE.glob("*.pyx"):
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            if (path.name.startswith("http") or path.name == "ws_handshake.pyx") and \
                    PARSER_LINE.match(code):
                found.update(int(m) for m in STATUS.findall(code))
            found.update(int(m) for m in CALLS.findall(code))
    return found


def test_every_status_the_core_produces_has_its_line_and_text():
    produced = produced_statuses()
    # The scan must find what is known to be there, or it proves nothing.
    assert {400, 408, 413, 414, 431, 501, 505, 503} <= produced
    missing = produced - set(FL_STATUSES)
    assert not missing, f"statuses without a line in core/status.h: {sorted(missing)}"
    assert len(set(FL_STATUSES)) == len(FL_STATUSES)
    for status in FL_STATUSES:
        assert STATUS_TEXTS[status].strip(), status


def test_every_line_but_the_fallback_is_produced_somewhere():
    assert FL_STATUSES[-1] == 500  # the fallback for a status missing from the list
    assert set(FL_STATUSES[:-1]) <= produced_statuses()


def stream_app():
    app = fastloop.App()

    @app.route("/up", methods=("POST",))
    def upload(request):
        return b"".join(request.stream(65536))

    app._stream_paths = ["/up"]
    return app


def answer_status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_oversized_trailers_answer_431_with_the_trailer_text():
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 900) for i in range(40))  # ~36 KB
    with running_server(stream_app()) as srv:
        data = raw_request(srv.port, b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked"
                           b"\r\n\r\n5\r\nhello\r\n0\r\n" + trailers + b"\r\n")
        assert data.startswith(b"HTTP/1.1 431 "), data[:80]
        assert STATUS_TEXTS[431].encode() in data
        assert b"body too large" not in data


@pytest.mark.parametrize("status, request_bytes", [
    (400, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"),
    (414, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"),
    (431, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n"),
    (501, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"),
    (505, b"GET / HTTP/2.5\r\nHost: t\r\n\r\n"),
])
def test_a_rejection_is_answered_counted_and_logged_as_itself(status, request_bytes, caplog):
    app = fastloop.App()
    app.static("/", b"Hello")
    with caplog.at_level(logging.DEBUG, logger="fastloop"):
        with running_server(app) as srv:
            data = raw_request(srv.port, request_bytes)
            assert answer_status(data) == status, data[:80]
            assert data.split(b"\r\n", 1)[0] == b"HTTP/1.1 %d %s" % (
                status, HTTPStatus(status).phrase.encode())
            stats = srv.stats()
    assert stats["rejected"] == {str(status): 1}
    assert f"rejected a request: {status} ({STATUS_TEXTS[status]})" in caplog.text


def test_the_connection_limit_is_answered_503_with_its_text(caplog):
    app = fastloop.App()
    app.static("/", b"Hello")
    with caplog.at_level(logging.DEBUG, logger="fastloop"):
        with running_server(app, limit_concurrency=1) as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as held:
                held.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                held.recv(4096)
                data = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert answer_status(data) == 503
    assert f"rejected a request: 503 ({STATUS_TEXTS[503]})" in caplog.text
