"""ASGI applications under `fastloop serve` with the operations flags users turn on: the access
log (answers and the requests the core refuses), trusted proxy headers, the root path, and the
listening line. Real processes, real sockets; the ASGI protocol itself is tests/test_asgi.py's
and the frameworks tests/test_asgi_frameworks.py's."""

from __future__ import annotations

import http.client
import json
import socket

from helpers import LOOPBACK, wait_until
from serving import ServeProcess

APP = "serve_apps:asgi_echo_scope"


def ask(srv: ServeProcess, path: str, headers: dict | None = None) -> tuple:
    conn = http.client.HTTPConnection(LOOPBACK, srv.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_the_access_log_has_answers_and_core_refusals():
    with ServeProcess([APP, "--port", "0", "--access-log", "--lifespan", "off"]) as srv:
        status, _ = ask(srv, "/logged?x=1", {"User-Agent": "tester/1"})
        assert status == 200
        with socket.create_connection((LOOPBACK, srv.port), timeout=5) as s:
            s.sendall(b"GET /two words HTTP/1.1\r\nHost: x\r\n\r\n")  # a bad target: 400
            assert s.recv(100).startswith(b"HTTP/1.1 400 ")
        assert wait_until(lambda: '"GET /two words HTTP/1.1" 400' in srv.log(), 5.0), srv.log()
        line = next(x for x in srv.lines if "/logged?x=1" in x)
        assert '"GET /logged?x=1 HTTP/1.1" 200 ' in line and '"tester/1"' in line
        assert line.startswith("127.0.0.1 - - [")


def test_the_listening_line_names_the_asyncio_loop():
    with ServeProcess([APP, "--port", "0", "--loop", "asyncio", "--lifespan", "off"]) as srv:
        assert "ASGI on asyncio" in srv.log() and "handler thread" not in srv.log()


def test_proxy_headers_from_a_trusted_peer_only():
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "shop.example"}
    with ServeProcess([APP, "--port", "0", "--proxy-headers", "--lifespan", "off"]) as srv:
        seen = json.loads(ask(srv, "/", headers)[1])
        assert seen["client"][0] == "203.0.113.7"
        assert (seen["scheme"], seen["host"]) == ("https", "shop.example")
    # Not trusted (the default list is 127.0.0.1, and this peer is not in an empty list):
    with ServeProcess([APP, "--port", "0", "--proxy-headers", "--forwarded-allow-ips",
                       "192.0.2.1", "--lifespan", "off"]) as srv:
        seen = json.loads(ask(srv, "/", headers)[1])
        assert seen["client"][0] == "127.0.0.1"
        assert seen["scheme"] == "http" and seen["host"] != "shop.example"


def test_root_path_is_announced_and_leads_the_path():
    with ServeProcess([APP, "--port", "0", "--root-path", "/app", "--lifespan", "off"]) as srv:
        seen = json.loads(ask(srv, "/items")[1])  # a proxy that took the prefix off
        assert (seen["root_path"], seen["path"]) == ("/app", "/app/items")
        seen = json.loads(ask(srv, "/app/items")[1])  # one that left it on
        assert seen["path"] == "/app/items"


def test_metrics_time_asgi_answers_by_status_class():
    from test_metrics import histogram, metrics_url, requests_total, scrape
    with ServeProcess([APP, "--port", "0", "--metrics", "--metrics-port", "0",
                       "--lifespan", "off"]) as srv:
        url = metrics_url(srv)
        for _ in range(3):
            assert ask(srv, "/timed")[0] == 200
        assert wait_until(lambda: requests_total(url) == 3, 5.0), scrape(url)
        buckets, total, count = histogram(scrape(url))["2xx"]
        assert count == 3 and buckets["+Inf"] == 3 and total > 0


def test_a_pipelined_answer_leaves_before_its_application_returns():
    # Two requests in one batch: the first application call answers, then goes on (a
    # background task) until the test has read that answer. An answer held until the call
    # returns (or until its batch ends) would never be read: the call waits for the reader.
    import asyncio
    import threading

    import fastloop
    from fastloop.asgi import ASGIApp
    from wire import read_answer

    read = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})
        if scope["path"] == "/first":
            for _ in range(500):  # at most 5 s
                if read.is_set():
                    break
                await asyncio.sleep(0.01)

    srv = fastloop.Server(ASGIApp(app, lifespan="off"), port=0)
    srv.start()
    try:
        with socket.create_connection((LOOPBACK, srv.port), timeout=5) as s:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            data, answers = b"", []
            while len(answers) < 2:
                got = read_answer(data)
                if got is not None:
                    answers.append(got[0])
                    data = got[1]
                    read.set()  # the first answer is here: its application may return
                    continue
                chunk = s.recv(65536)  # times out (5 s) if the first answer is held back
                assert chunk, data
                data += chunk
        assert [a.body for a in answers] == [b"/first", b"/second"]
    finally:
        read.set()
        srv.stop()


def test_websocket_flags_of_fastloop_serve():
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect
    args = [APP, "--port", "0", "--lifespan", "off", "--ws-max-size", "1024",
            "--no-ws-per-message-deflate", "--proxy-headers", "--access-log"]
    with ServeProcess(args) as srv:
        url = f"ws://{LOOPBACK}:{srv.port}/ws"
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        with connect(url, proxy=None, additional_headers=headers, max_size=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers  # deflate not offered
            first = json.loads(ws.recv(timeout=5))
            assert first == {"client": ["203.0.113.9", 0], "scheme": "wss"}  # through the proxy
            ws.send("x" * 1024)
            assert ws.recv(timeout=5) == "x" * 1024
            ws.send("x" * 1025)
            try:
                ws.recv(timeout=5)
            except ConnectionClosedError as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 1009
            else:
                raise AssertionError("a message over --ws-max-size was echoed")
    with ServeProcess([APP, "--port", "0", "--lifespan", "off", "--ws", "none"]) as srv:
        with socket.create_connection((LOOPBACK, srv.port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200 ")  # --ws none: plain HTTP
