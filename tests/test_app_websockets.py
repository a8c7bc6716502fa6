"""WebSocket routes of the fastloop App (`@app.websocket(path)`, fastloop/websocket.py): async
handlers on their own asyncio loop beside the handler threads, with the `websockets` library as
the client. The protocol itself is tested through ASGI (tests/test_asgi_websockets.py): both
reach the same core."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgi_kit import Seen
from helpers import raw_request, running_server
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ws_kit import client, upgrade_request, wait_for

import fastloop
from fastloop.websocket import WebSocketClosed


def settled(server) -> dict:
    wait_for(lambda: server.stats()["open"] == 0, what="every connection closed")
    stats = server.stats()
    assert stats["accepted"] == stats["closed"], stats
    return stats


def make_app(seen: Seen) -> fastloop.App:
    app = fastloop.App()
    app.static("/static", "from C")

    @app.get("/slow")
    def slow(request):
        time.sleep(2.0)  # on a handler thread: the WebSockets go on meanwhile
        return "slow"

    @app.websocket("/echo")
    async def echo(ws):
        seen.put((ws.path, ws.query_string, ws.header("x-who")))
        async for message in ws:
            await ws.send(message)
        seen.put(ws.close_code)

    @app.websocket("/chat")
    async def chat(ws):
        await ws.accept(subprotocol="chat.v1", headers=[(b"x-room", b"lobby")])
        name = await ws.receive()
        await ws.send(f"hello {name}")
        await ws.close(4001, "that is all")

    @app.websocket("/refuse")
    async def refuse(ws):
        seen.put("refused")  # returns without accepting: 403

    @app.websocket("/boom")
    async def boom(ws):
        await ws.accept()
        raise RuntimeError("boom (expected by the test)")

    @app.websocket("/closed")
    async def closed(ws):
        try:
            await ws.receive()
        except WebSocketClosed as exc:
            seen.put((exc.code, exc.reason))
            raise
    return app


def test_echo_route_beside_static_and_python_routes():
    seen = Seen()
    with running_server(make_app(seen), timeouts={"ws_ping": 0}) as server:
        with client(server, path="/echo?x=1", additional_headers={"X-Who": "tester"}) as ws:
            assert seen.get() == ("/echo", b"x=1", "tester")
            for message in ("text", b"\x00binary", "x" * 100000):
                ws.send(message)
                assert ws.recv() == message
            assert raw_request(server.port, b"GET /static HTTP/1.1\r\nHost: t\r\n"
                               b"Connection: close\r\n\r\n").endswith(b"from C")
        assert seen.get() == 1000
        stats = settled(server)
        assert stats["ws_opened"] == 1


def test_a_slow_handler_thread_does_not_hold_websockets():
    seen = Seen()
    with running_server(make_app(seen), threads=1, timeouts={"ws_ping": 0}) as server:
        slow = threading.Thread(target=raw_request, args=(server.port, b"GET /slow HTTP/1.1\r\n"
                                                          b"Host: t\r\nConnection: close\r\n\r\n"))
        slow.start()
        time.sleep(0.2)  # the only handler thread sleeps now
        with client(server, path="/echo") as ws:
            t0 = time.monotonic()
            ws.send("quick")
            assert ws.recv() == "quick"
            assert time.monotonic() - t0 < 1.0  # not behind the sleeping handler
        slow.join()


def test_accept_with_subprotocol_and_headers_then_close_with_a_code():
    with running_server(make_app(Seen()), timeouts={"ws_ping": 0}) as server:
        with client(server, path="/chat", subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.response.headers["X-Room"] == "lobby"
            ws.send("ann")
            assert ws.recv() == "hello ann"
            with pytest.raises(ConnectionClosed):
                ws.recv()
        assert (ws.close_code, ws.close_reason) == (4001, "that is all")
        settled(server)


def test_refusing_raising_and_closed_handlers():
    seen = Seen()
    with running_server(make_app(seen), timeouts={"ws_ping": 0}) as server:
        with pytest.raises(InvalidStatus) as info:
            client(server, path="/refuse")
        assert info.value.response.status_code == 403 and seen.get() == "refused"
        with client(server, path="/boom") as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv()
        assert ws.close_code == 1011
        with client(server, path="/closed") as ws:
            ws.close(4002, "bye")
        assert seen.get() == (4002, "bye")
        stats = settled(server)
        assert stats["asgi_app_errors"] == 1  # /boom's (a handler ending on WebSocketClosed is fine)


def test_upgrades_of_other_paths_are_plain_http():
    with running_server(make_app(Seen()), timeouts={"ws_ping": 0}) as server:
        answer = raw_request(server.port, upgrade_request(path="/static"))
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"from C")
        answer = raw_request(server.port, upgrade_request(path="/nowhere"))
        assert answer.startswith(b"HTTP/1.1 404 ")


def test_a_websocket_handler_must_be_async():
    app = fastloop.App()
    with pytest.raises(TypeError):
        app.websocket("/sync")(lambda ws: None)


def test_websocket_routes_under_the_access_log():
    seen = Seen()
    app = make_app(seen)
    from fastloop._observe import ObservedApp
    observed = ObservedApp(app, [])
    with running_server(observed, timeouts={"ws_ping": 0}) as server:
        with client(server, path="/echo") as ws:
            ws.send("seen through the wrapper")
            assert ws.recv() == "seen through the wrapper"


def test_handlers_run_on_one_asyncio_loop():
    loops = Seen()
    app = fastloop.App()

    @app.websocket("/which")
    async def which(ws):
        loops.put(id(asyncio.get_running_loop()))
        await ws.send("ok")

    with running_server(app, timeouts={"ws_ping": 0}) as server:
        for _ in range(3):
            with client(server, path="/which") as ws:
                assert ws.recv() == "ok"
        assert len({loops.get(), loops.get(), loops.get()}) == 1


def test_path_parameters_in_websocket_routes():
    app = fastloop.App()
    app.static("/static", "from C")

    @app.websocket("/echo")
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    @app.websocket("/rooms/{name}/{n:int}")
    async def room(ws, name, n):
        assert ws.path_params == {"name": name, "n": n}
        await ws.send(f"{name}:{n + 1}")
        await ws.close()

    with running_server(app, timeouts={"ws_ping": 0}) as server:
        with client(server, path="/rooms/caf%C3%A9/41?x=1") as ws:
            assert ws.recv() == "café:42"
        with client(server, path="/echo") as ws:  # an exact route beside them
            ws.send("same")
            assert ws.recv() == "same"
        for path in ("/rooms/lobby/x", "/nowhere"):  # no WebSocket route: 403
            with pytest.raises(InvalidStatus) as refused:
                with client(server, path=path):
                    pass
            assert refused.value.response.status_code == 403, path
        # Plain HTTP on those paths is untouched.
        assert raw_request(server.port, b"GET /static HTTP/1.1\r\nHost: t\r\n"
                           b"Connection: close\r\n\r\n").endswith(b"from C")
        assert raw_request(server.port, b"GET /rooms/a/1 HTTP/1.1\r\nHost: t\r\n"
                           b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 404 ")
        settled(server)


def test_a_bad_websocket_path_pattern_fails_at_the_decorator():
    app = fastloop.App()
    with pytest.raises(ValueError):
        app.websocket("/rooms/{n:nope}")
