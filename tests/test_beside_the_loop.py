"""Python beside the loop: an event loop never runs application code and never waits on one
client. Each test uses the default settings (one event loop, the default handler threads)
and would fail on a server whose loop runs handlers or blocks while a client is slow."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from helpers import raw_request, running_server, wait_until

import fastloop
import fastloop.wsgi

H = b"Host: t\r\n"
BIG = 32 << 20


def request_on(sock: socket.socket, path: bytes) -> bytes:
    """One keep-alive GET on sock; returns its body (Content-Length answers only)."""
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200 ")
    length = 0
    while (line := f.readline()) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return f.read(length)


@pytest.fixture
def app(tmp_path):
    app = fastloop.App()
    app.static("/static", b"static")
    blob = tmp_path / "blob.bin"
    with open(blob, "wb") as f:
        f.truncate(BIG)
    state = {"slow_done": threading.Event(), "yields": []}

    @app.get("/quick")
    def quick(request):
        return b"quick"

    @app.get("/slow")
    def slow(request):
        time.sleep(float(request.query or 2))
        state["slow_done"].set()
        return b"slow"

    @app.get("/file")
    def file(request):
        return fastloop.Response(open(blob, "rb"))

    @app.get("/iter")
    def pieces(request):
        return fastloop.Response(b"z" * 65536 for _ in range(BIG // 65536))

    @app.get("/events")
    def events(request):
        def gen():
            for i in range(5):
                state["yields"].append(time.monotonic())
                yield f"data: {i}\n\n"
                time.sleep(0.2)
        return fastloop.Response(gen(), content_type="text/event-stream")

    app.state = state  # type: ignore[attr-defined]
    return app


def event_arrivals(port: int, count: int = 5) -> list:
    """GET /events; the time each of its first count events ("data: ...") arrived."""
    arrivals: list = []
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /events HTTP/1.1\r\n" + H + b"\r\n")
        while len(arrivals) < count:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
            while data.count(b"data: ") > len(arrivals):
                arrivals.append(time.monotonic())
    return arrivals


def other_clients_are_served(port: int, quick: int = 50, static: int = 50, conns: int = 10) -> None:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(conns)]
    try:
        for i in range(max(quick, static) // conns):
            for s in socks:
                assert request_on(s, b"/static") == b"static"
                assert request_on(s, b"/quick") == b"quick"
    finally:
        for s in socks:
            s.close()


def test_a_sleeping_handler_holds_up_no_other_connection(app):
    with running_server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow:
            slow.sendall(b"GET /slow?2 HTTP/1.1\r\n" + H + b"\r\n")
            time.sleep(0.1)  # the handler sleeps now
            other_clients_are_served(srv.port)
            assert not app.state["slow_done"].is_set()  # all of it while the handler slept
            slow.settimeout(5)
            assert slow.recv(4096).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("path", [b"/file", b"/iter"])
def test_a_client_that_never_reads_a_32_mib_answer_holds_up_no_one(app, path):
    with running_server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
            time.sleep(0.3)  # its answer fills the socket buffers, then waits
            started = time.monotonic()
            other_clients_are_served(srv.port)
            assert time.monotonic() - started < 3.0  # nowhere near the 30 s write timeout
            assert srv.stats()["bytes_out"] < BIG // 2  # the stalled answer is still unsent


def test_each_streamed_event_reaches_the_client_before_the_next_is_yielded(app):
    with running_server(app) as srv:
        arrivals = event_arrivals(srv.port)
    yields = app.state["yields"]
    for i in range(4):
        assert arrivals[i] < yields[i + 1], f"event {i} arrived after event {i + 1} was yielded"


def test_stop_returns_by_its_timeout_with_a_sleeping_handler_and_a_stalled_download(app):
    srv = fastloop.Server(app, host="127.0.0.1", port=0)
    srv.start()
    sleeper = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sleeper.sendall(b"GET /slow?10 HTTP/1.1\r\n" + H + b"\r\n")
        stalled.sendall(b"GET /file HTTP/1.1\r\n" + H + b"\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        srv.stop(1.0)
        took = time.monotonic() - started
        stats = srv.stats()
    finally:
        sleeper.close()
        stalled.close()
    assert took < 1.1, f"stop(1.0) took {took:.2f}s"
    assert stats["open"] == 0 and stats["accepted"] == stats["closed"] == 2
    assert stats["aborted"] == 2  # both closed with their handler's answer unfinished


def test_pipelined_python_requests_then_a_half_close_are_answered_and_closed_at_once(app):
    n = 1000
    with running_server(app) as srv:
        started = time.monotonic()
        data = raw_request(srv.port, b"".join(b"GET /quick?%d HTTP/1.1\r\n" % i + H + b"\r\n"
                                              for i in range(n)), timeout=8.0, shut_write=True)
        took = time.monotonic() - started
    assert data.count(b"HTTP/1.1 200 OK") == n and data.endswith(b"quick")
    assert took < 3.0, f"the close came {took:.1f}s later (the idle timeout is 5 s)"


def test_answers_of_one_turn_leave_as_each_is_ready(app):
    # /slow and /quick on two connections arrive in the same loop turn: /quick's answer
    # must not wait for /slow's handler.
    with running_server(app) as srv:
        a = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        b = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            a.sendall(b"GET /slow?2 HTTP/1.1\r\n" + H + b"\r\n")
            b.sendall(b"GET /quick HTTP/1.1\r\n" + H + b"\r\n")
            started = time.monotonic()
            assert b.recv(4096).endswith(b"quick")
            assert time.monotonic() - started < 1.5  # well before /slow's 2 s
        finally:
            a.close()
            b.close()


def test_books_add_up_after_mixed_load(app):
    with running_server(app) as srv:
        threads = [threading.Thread(target=other_clients_are_served, args=(srv.port, 20, 20, 4))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert wait_until(lambda: srv.stats()["open"] == 0, timeout=2)
        s = srv.stats()
        assert s["accepted"] == s["closed"] == 16 and s["requests"] == 4 * 40
        assert s["late_answers"] == 0 and s["aborted"] == 0


@pytest.fixture
def flask_app(tmp_path):
    flask = pytest.importorskip("flask")
    blob = tmp_path / "blob.bin"
    with open(blob, "wb") as f:
        f.truncate(BIG)
    web = flask.Flask("beside")
    yields: list = []

    @web.get("/static")
    def static_text():  # Flask's own "static" endpoint name is taken
        return "static"

    @web.get("/quick")
    def quick():
        return "quick"

    @web.get("/slow")
    def slow():
        time.sleep(3)
        return "slow"

    @web.get("/file")
    def file():
        return flask.send_file(blob)

    @web.get("/events")
    def events():
        def gen():
            for i in range(5):
                yields.append(time.monotonic())
                yield f"data: {i}\n\n"
                time.sleep(0.2)
        return flask.Response(gen(), mimetype="text/event-stream")

    app = fastloop.wsgi.WSGIApp(web)
    app.yields = yields  # type: ignore[attr-defined]
    return app


def test_flask_a_sleeping_view_and_a_client_that_never_reads_send_file_hold_up_no_one(flask_app):
    with running_server(flask_app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow, \
                socket.create_connection(("127.0.0.1", srv.port), timeout=10) as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(b"GET /slow HTTP/1.1\r\n" + H + b"\r\n")
            stalled.sendall(b"GET /file HTTP/1.1\r\n" + H + b"\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            other_clients_are_served(srv.port)
            assert time.monotonic() - started < 2.5  # before the sleeping view (3 s) returns
            assert srv.stats()["bytes_out"] < BIG // 2  # the stalled file is still unsent


def test_flask_streamed_events_reach_the_client_as_they_are_yielded(flask_app):
    with running_server(flask_app) as srv:
        arrivals = event_arrivals(srv.port)
    for i in range(4):
        assert arrivals[i] < flask_app.yields[i + 1], f"event {i} came after event {i + 1} was yielded"


def test_an_answer_that_comes_after_stop_is_dropped_and_counted(app):
    srv = fastloop.Server(app, host="127.0.0.1", port=0)
    srv.start()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /slow?0.8 HTTP/1.1\r\n" + H + b"\r\n")
        time.sleep(0.2)  # the handler sleeps now
        srv.stop(0.2)
        stats = srv.stats()
        assert stats["aborted"] == 1 and stats["open"] == 0 and stats["late_answers"] == 0
        assert s.recv(4096) == b""  # closed, unanswered
    assert app.state["slow_done"].wait(3)
    assert wait_until(lambda: srv.stats()["late_answers"] == 1, timeout=2)
