"""The access log over real sockets, under the default handler threads: every format atom,
the JSON option, the file destination, and the true body bytes (a streamed body, a file,
HEAD, a 404, a 405). Nothing is logged unless the access log is on."""

import base64
import json
import logging
import os
import re
import signal
import socket
import time

import pytest
from helpers import LOOPBACK, running_server, wait_until
from serving import ServeProcess, get

import fastloop
from fastloop._access import AccessLogApp
from fastloop._observe import ObservedApp
from fastloop._accessformat import DEFAULT_FORMAT, check_format
from fastloop.config import Config
from fastloop.loader import as_app

PIECE = b"x" * 10000
PIECES = 197  # 1 970 000 bytes streamed
LONG_PIECES = PIECES * 64  # 126 MB, for a client that leaves mid-stream


def make_app(tmp_path):
    app = fastloop.App()
    data = tmp_path / "data.bin"
    data.write_bytes(b"f" * 123457)

    @app.get("/hello")
    def hello(request):
        return "hello"

    @app.get("/stream")
    def stream(request):
        return fastloop.Response((PIECE for _ in range(PIECES)), content_type="application/octet-stream")

    @app.get("/long-stream")
    def long_stream(request):
        # Far more than socket buffers and the 1 MiB high-water mark can absorb.
        return fastloop.Response((PIECE for _ in range(LONG_PIECES)), content_type="application/octet-stream")

    @app.get("/file")
    def file(request):
        return open(data, "rb")

    @app.get("/boom")
    def boom(request):
        raise RuntimeError("boom")

    @app.get("/items/{n:int}")
    def item(request, n):
        return f"item {n}"

    return app


def exchange(port, head):
    """Sends one request (Connection: close) and returns every byte of the answer."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return data


def request(port, method, target, extra=b""):
    return exchange(port, method.encode() + b" " + target.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                    + extra + b"Connection: close\r\n\r\n")


class Log(logging.Handler):
    """The access-log lines, as written."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def wait(self, count):
        # The line is written on the handler thread once the answer is handed over, which
        # may be just after the client read its last byte.
        assert wait_until(lambda: len(self.lines) >= count), self.lines
        return self.lines[-1]


@pytest.fixture
def log():
    logger = logging.getLogger("fastloop.access")
    handler = Log()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def served(tmp_path, log):
    def serve(fmt=DEFAULT_FORMAT, as_json=False):
        return running_server(AccessLogApp(make_app(tmp_path), fmt, as_json))
    return serve


def test_default_format_is_gunicorns(served, log):
    with served() as srv:
        data = request(srv.port, "GET", "/hello?x=1", b"User-Agent: t/1\r\nReferer: http://r/\r\n")
        assert data.endswith(b"hello")
        line = log.wait(1)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /hello\?x=1 HTTP/1\.1" 200 5 "http://r/" "t/1"', line), line


ATOMS = [  # atom, request extra header lines, expected text (a regex)
    ("h", b"", r"127\.0\.0\.1"),
    ("l", b"", r"-"),
    ("u", b"", r"-"),
    ("u", b"Authorization: Basic " + base64.b64encode(b"ann:secret") + b"\r\n", r"ann"),
    ("t", b"", r"\[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"),
    ("r", b"", r"GET /hello\?a=b HTTP/1\.1"),
    ("m", b"", r"GET"),
    ("U", b"", r"/hello"),
    ("q", b"", r"a=b"),
    ("H", b"", r"HTTP/1\.1"),
    ("s", b"", r"200"),
    ("B", b"", r"5"),
    ("b", b"", r"5"),
    ("f", b"Referer: http://ref/x\r\n", r"http://ref/x"),
    ("f", b"", r"-"),
    ("a", b"User-Agent: agent/2\r\n", r"agent/2"),
    ("D", b"", r"\d+"),
    ("L", b"", r"\d+\.\d{6}"),
    ("p", b"", f"<{os.getpid()}>"),
    ("{x-trace}i", b"X-Trace: abc 123\r\n", r"abc 123"),
    ("{X-Trace}i", b"X-Trace: abc\r\n", r"abc"),
    ("{x-trace}i", b"", r"-"),
]


@pytest.mark.parametrize("atom,extra,expected", ATOMS)
def test_each_atom(served, log, atom, extra, expected):
    with served(f"<%({atom})s>") as srv:
        assert request(srv.port, "GET", "/hello?a=b", extra).endswith(b"hello")
        line = log.wait(1)
    assert re.fullmatch(f"<{expected}>", line), (atom, line)


def test_b_is_a_dash_for_no_body_and_duration_atoms_agree(served, log):
    with served("%(s)s %(B)s %(b)s %(D)s %(L)s") as srv:
        assert request(srv.port, "HEAD", "/hello").startswith(b"HTTP/1.1 200 ")
        status, big_b, small_b, micros, seconds = log.wait(1).split()
    assert (status, big_b, small_b) == ("200", "0", "-")
    assert abs(int(micros) - float(seconds) * 1e6) <= 1


def test_json_lines(served, log):
    with served(as_json=True) as srv:
        request(srv.port, "GET", "/items/7?z=9", b"User-Agent: j/1\r\n")
        entry = json.loads(log.wait(1))
    assert entry["remote_addr"] == "127.0.0.1" and entry["user"] is None
    assert (entry["request"], entry["method"], entry["path"], entry["query"],
            entry["protocol"]) == ("GET /items/7?z=9 HTTP/1.1", "GET", "/items/7", "z=9",
                                   "HTTP/1.1")
    assert (entry["status"], entry["bytes"], entry["referer"], entry["user_agent"]) == \
        (200, 6, None, "j/1")
    assert entry["pid"] == os.getpid() and isinstance(entry["duration_us"], int)
    assert abs(entry["duration_us"] - entry["duration_s"] * 1e6) <= 1
    assert abs(time.time() - time.mktime(time.strptime(entry["time"][:19],
                                                       "%Y-%m-%dT%H:%M:%S"))) < 60


def test_true_bytes_of_a_streamed_body_a_file_and_errors(served, log):
    fmt = '"%(r)s" %(s)s %(B)s'
    with served(fmt) as srv:
        data = request(srv.port, "GET", "/stream")
        assert data.count(b"x") == PIECE_BYTES
        assert log.wait(1) == f'"GET /stream HTTP/1.1" 200 {PIECE_BYTES}'
        data = request(srv.port, "GET", "/file")
        assert data.endswith(b"f" * 123457)
        assert log.wait(2) == '"GET /file HTTP/1.1" 200 123457'
        assert request(srv.port, "HEAD", "/file").startswith(b"HTTP/1.1 200 ")
        assert log.wait(3) == '"HEAD /file HTTP/1.1" 200 0'
        assert request(srv.port, "HEAD", "/stream").startswith(b"HTTP/1.1 200 ")
        assert log.wait(4) == '"HEAD /stream HTTP/1.1" 200 0'
        assert request(srv.port, "GET", "/nowhere").startswith(b"HTTP/1.1 404 ")
        assert log.wait(5) == '"GET /nowhere HTTP/1.1" 404 9'  # b"Not Found"
        assert request(srv.port, "POST", "/hello").startswith(b"HTTP/1.1 405 ")
        assert log.wait(6) == '"POST /hello HTTP/1.1" 405 18'  # b"Method Not Allowed"
        assert request(srv.port, "DELETE", "/items/3").startswith(b"HTTP/1.1 405 ")
        assert log.wait(7) == '"DELETE /items/3 HTTP/1.1" 405 18'
        assert request(srv.port, "GET", "/boom").startswith(b"HTTP/1.1 500 ")
        line = log.wait(8)
    assert line.startswith('"GET /boom HTTP/1.1" 500 ')
    assert len(log.lines) == 8


PIECE_BYTES = len(PIECE) * PIECES  # 1.97 MB


def test_a_client_that_leaves_mid_stream_is_logged_with_what_was_posted(served, log):
    with served("%(s)s %(B)s") as srv:
        with socket.create_connection((LOOPBACK, srv.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /long-stream HTTP/1.1\r\nHost: t\r\n\r\n")
            s.recv(1000)
        status, sent = log.wait(1).split()
    assert status == "200" and 0 < int(sent) < PIECE_BYTES * 64


def test_bad_formats_are_refused():
    check_format(DEFAULT_FORMAT)
    check_format("%({x-y}i)s %(D)s")
    for bad in ("%(h", "%(zz)s", "%(h)d"):
        with pytest.raises(ValueError):
            check_format(bad)
    with pytest.raises(ValueError, match="access_log_format"):
        Config.from_env({}, access_log_format="%(nope)s")


# ---- requests the core rejects itself ------------------------------------------------------

REJECTED = [  # name, bytes sent, status, the request part of the line (a regex)
    ("bad request line", b"GET /x HTTP/1.1 junk\r\nHost: t\r\n\r\n", 400,
     r'"GET /x HTTP/1\.1 junk"'),
    ("garbage", b"\x01\x02\x1b[31m\r\n\r\n", 400, r'"\\x01\\x02\\x1b\[31m - -"'),
    ("body too large", b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n",
     413, r'"POST /hello HTTP/1\.1"'),
    ("URI too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414,
     r'"GET /a{251} -"'),
    ("header too large", b"GET /h?q=1 HTTP/1.1\r\nHost: t\r\nX: " + b"y" * 20000 + b"\r\n\r\n",
     431, r'"GET /h\?q=1 HTTP/1\.1"'),
    ("unknown transfer coding", b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
     501, r'"POST /e HTTP/1\.1"'),
    ("HTTP/2 line", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, r'"GET / HTTP/2\.0"'),
]


@pytest.mark.parametrize("name,data,status,line", REJECTED, ids=[r[0] for r in REJECTED])
def test_requests_the_core_rejects_are_logged_with_client_and_line(served, log, name, data,
                                                                   status, line):
    with served() as srv:
        answer = exchange(srv.port, data)
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:80]
        body = answer.split(b"\r\n\r\n", 1)[1]
        got = log.wait(1)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] ' + line + rf' {status} {len(body)} "-" "-"',
                        got), got
    assert len(log.lines) == 1


def test_a_header_timeout_is_logged_as_408(tmp_path, log):
    app = AccessLogApp(make_app(tmp_path), as_json=True)
    with running_server(app, timeouts={"header": 0.3}) as srv:
        answer = exchange(srv.port, b"GET /slowloris HTTP/1.1\r\nHost: t\r\n")  # never ends
        assert answer.startswith(b"HTTP/1.1 408 ")
        entry = json.loads(log.wait(1))
    assert (entry["status"], entry["method"], entry["path"], entry["remote_addr"]) == \
        (408, "GET", "/slowloris", "127.0.0.1")


def test_rejections_through_fastloop_serve_and_the_proxy_wrapper(tmp_path, log):
    # as_app puts FrontApp (proxy headers) outside the access log: rejections still reach it.
    app = as_app(make_app(tmp_path), Config(access_log=True, proxy_headers=True))
    with running_server(app) as srv:
        assert exchange(srv.port, b"BAD\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert re.search(r' "BAD - -" 400 ', log.wait(1)), log.lines


def test_rejections_are_not_logged_without_the_access_log(tmp_path, log):
    with running_server(as_app(make_app(tmp_path), Config())) as srv:
        assert exchange(srv.port, b"BAD\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        time.sleep(0.2)
    assert log.lines == []


def test_nothing_is_logged_without_the_access_log(tmp_path, log):
    app = as_app(make_app(tmp_path), Config())
    assert not isinstance(app, ObservedApp)
    with running_server(app) as srv:
        assert request(srv.port, "GET", "/hello").endswith(b"hello")
        assert request(srv.port, "GET", "/nowhere").startswith(b"HTTP/1.1 404 ")
        assert request(srv.port, "POST", "/hello").startswith(b"HTTP/1.1 405 ")
    assert log.lines == []


# ---- fastloop serve: the destination ------------------------------------------------------

def test_serve_writes_the_access_log_to_a_file(tmp_path):
    path = tmp_path / "access.log"
    with ServeProcess(["serve_apps:app", "--port", "0", "--access-log", "--access-log-file",
                       str(path), "--access-log-format", "%(m)s %(U)s %(s)s %(B)s"]) as srv:
        assert get(srv.url, "/items/5") == b"item 5"
        assert wait_until(lambda: path.exists() and path.read_text() != "")
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    assert path.read_text() == "GET /items/5 200 6\n"  # the line alone: no second timestamp
    assert "GET /items/5" not in srv.log()


def test_serve_access_log_goes_to_stderr_by_default_as_json(tmp_path):
    with ServeProcess(["serve_apps:app", "--port", "0", "--access-log",
                       "--access-log-json"]) as srv:
        assert get(srv.url, "/items/6") == b"item 6"
        srv.wait_for('"path": "/items/6"')
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    line = next(line for line in srv.log().splitlines() if '"/items/6"' in line)
    assert json.loads(line)["status"] == 200


def test_serve_logs_nothing_without_access_log(tmp_path):
    path = tmp_path / "access.log"
    with ServeProcess(["serve_apps:app", "--port", "0", "--access-log-file", str(path)]) as srv:
        assert get(srv.url, "/items/5") == b"item 5"
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    assert not path.exists() and "GET /items/5" not in srv.log()


def websocket_app():
    app = fastloop.App()

    @app.websocket("/ws")
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    @app.websocket("/refuse")
    async def refuse(ws):
        return  # never accepted: the client gets 403

    return app


def test_websocket_handshakes_are_logged_as_101_or_their_refusal(log):
    from ws_kit import client, upgrade_request

    with running_server(AccessLogApp(websocket_app())) as server:
        with client(server, "/ws?room=1", additional_headers={"User-Agent": "ws-tester/2"}) as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
            line = log.wait(1)  # written once it is accepted, not when it ends
        assert '"GET /ws?room=1 HTTP/1.1" 101 - "-" "ws-tester/2"' in line, line
        assert exchange(server.port, upgrade_request("/refuse")).startswith(b"HTTP/1.1 403 ")
        assert '"GET /refuse HTTP/1.1" 403 ' in log.wait(2)
    assert len(log.lines) == 2


def test_asgi_websocket_handshakes_are_logged(log):
    from fastloop._access import AccessLog
    from fastloop.asgi_front import ObserveMiddleware
    from ws_kit import client, make_echo, serve_ws

    with serve_ws(ObserveMiddleware(make_echo(), [AccessLog()])) as server:
        with client(server, "/chat") as ws:
            ws.send(b"\x00\x01")
            assert ws.recv() == b"\x00\x01"
        assert '"GET /chat HTTP/1.1" 101 ' in log.wait(1)
