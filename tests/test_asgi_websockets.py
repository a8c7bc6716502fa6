"""WebSockets through ASGI (asgiref's WebSocket spec, RFC 6455, RFC 7692), with the `websockets`
library as the real client, and a raw client for the frames a real client never sends: echo of
every size, fragmentation, ping/pong, the close handshake from either side with its codes,
compression on and off, bad frames with their close codes, refusals, backpressure, and a client
vanishing: nothing leaks, the books add up."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import threading
import time

import pytest
from asgi_kit import Seen, rss_kib
from helpers import raw_request
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ws_kit import (BINARY, CLOSE, PING, TEXT, RawWs, client, make_echo, open_fds, serve_ws,
                    upgrade_request, wait_for)


def settled(server) -> dict:
    """The server's books once every connection has closed."""
    wait_for(lambda: server.stats()["open"] == 0, what="every connection closed")
    stats = server.stats()
    assert stats["accepted"] == stats["closed"], stats
    return stats


# ---- echo --------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_and_binary_of_every_size(compression):
    with serve_ws(make_echo()) as server:
        with client(server, compression=compression) as ws:
            if compression:
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            else:
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
            for message in ["", "hello", "ünïcödé ✓" * 100, b"", b"\x00\xff" * 50,
                            os.urandom(1 << 20), "x" * (1 << 20)]:
                ws.send(message)
                assert ws.recv() == message
            big = os.urandom(16 << 20)
            ws.send(big)
            assert hashlib.sha256(ws.recv()).digest() == hashlib.sha256(big).digest()
        stats = settled(server)
        assert stats["ws_opened"] == 1
        assert not stats.get("ws_errors")


def test_compression_shrinks_what_goes_on_the_wire():
    text = "the same words again and again " * 2000
    sizes = {}
    for compression in ("deflate", None):
        with serve_ws(make_echo()) as server:
            with client(server, compression=compression) as ws:
                ws.send(text)
                assert ws.recv() == text
            sizes[compression] = settled(server)["bytes_out"]
    assert sizes["deflate"] * 10 < sizes[None], sizes


def test_fragmented_messages_are_joined():
    with serve_ws(make_echo()) as server:
        with client(server, compression=None) as ws:
            ws.send(["frag", "men", "ted"])
            assert ws.recv() == "fragmented"
            ws.send([b"\x01", b"\x02" * 70000, b"\x03"])
            assert ws.recv() == b"\x01" + b"\x02" * 70000 + b"\x03"
        settled(server)


def test_fragments_with_a_ping_between_them():
    with serve_ws(make_echo()) as server:
        raw = RawWs(server.port)
        raw.send_frame(TEXT, b"ab", fin=False)
        raw.send_frame(PING, b"between")
        raw.send_frame(0, b"cd", fin=True)
        assert raw.next_event() == ("pong", b"between")  # answered by the core at once
        assert raw.next_event() == ("text", "abcd")
        raw.close()
        settled(server)


def test_ping_is_answered_by_the_core():
    with serve_ws(make_echo()) as server:
        with client(server) as ws:
            assert ws.ping(b"are you there").wait(5)
            ws.send("still echoing")
            assert ws.recv() == "still echoing"


# ---- the close handshake -----------------------------------------------------------------

def test_client_close_code_and_reason_reach_the_app_and_are_echoed():
    seen = Seen()
    with serve_ws(make_echo(seen)) as server:
        with client(server) as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
            ws.close(4321, "bye now")
        assert ws.close_code == 4321  # our close frame echoed the code
        seen.get()  # the scope
        assert seen.get() == {"type": "websocket.disconnect", "code": 4321, "reason": "bye now"}
        settled(server)


@pytest.mark.parametrize("code, reason", [(1000, ""), (1001, "going away"), (4000, "custom")])
def test_app_close_code_and_reason_reach_the_client(code, reason):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last words"})
        await send({"type": "websocket.close", "code": code, "reason": reason})

    with serve_ws(app) as server:
        with client(server) as ws:
            assert ws.recv() == "last words"
            with pytest.raises(ConnectionClosed):
                ws.recv()
        assert ws.close_code == code and ws.close_reason == reason
        settled(server)


def test_app_returning_closes_with_1000_and_raising_with_1011():
    async def returns(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})

    async def raises(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom (expected by the test)")

    for app, code in ((returns, 1000), (raises, 1011)):
        with serve_ws(app) as server:
            with client(server) as ws:
                with pytest.raises(ConnectionClosed):
                    ws.recv()
            assert ws.close_code == code
            stats = settled(server)
            assert stats["asgi_app_errors"] == (1 if code == 1011 else 0)


def test_messages_sent_before_the_close_arrive_first():
    """A close right behind messages: the echoes of the messages go out before the close
    frame that answers it (what Autobahn calls strict)."""
    with serve_ws(make_echo()) as server:
        raw = RawWs(server.port)
        raw.sock.sendall(b"".join(raw_frame(TEXT, b"m%d" % i) for i in range(20))
                         + raw_frame(CLOSE, struct.pack("!H", 1000)))
        got = [raw.next_event() for _ in range(21)]
        assert got[:20] == [("text", "m%d" % i) for i in range(20)]
        assert got[20] == ("close", 1000, "")
        raw.wait_eof()
        settled(server)


def raw_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    from fastloop._core import ws_frame
    return ws_frame(opcode, payload, fin=fin, mask=b"\x01\x02\x03\x04")


# ---- bad frames --------------------------------------------------------------------------

@pytest.mark.parametrize("name, frame, code", [
    ("unmasked frame", lambda: __import__("fastloop._core", fromlist=["ws_frame"]).ws_frame(
        TEXT, b"hi"), 1002),
    ("reserved opcode", lambda: raw_frame(3, b"x"), 1002),
    ("invalid UTF-8", lambda: raw_frame(TEXT, b"ok \xc3\x28 bad"), 1007),
    ("control frame over 125 bytes", lambda: raw_frame(PING, b"x" * 126), 1002),
    ("fragmented control frame", lambda: raw_frame(PING, b"x", fin=False), 1002),
    ("continuation without a message", lambda: raw_frame(0, b"x"), 1002),
    ("message over ws_max_size", lambda: raw_frame(BINARY, b"x" * 2000), 1009),
    ("RSV1 without deflate", lambda: bytes([0xC1]) + raw_frame(TEXT, b"x")[1:], 1002),
    ("invalid close code", lambda: raw_frame(CLOSE, struct.pack("!H", 1005)), 1002),
])
def test_bad_frames_get_their_close_code(name, frame, code):
    seen = Seen()
    with serve_ws(make_echo(seen), app_kw={"ws_max_size": 1024}) as server:
        raw = RawWs(server.port)
        raw.send_frame(TEXT, b"before")
        assert raw.next_event() == ("text", "before")
        raw.sock.sendall(frame())
        assert raw.close_code() == (code, "")
        raw.wait_eof()
        seen.get()
        assert seen.get()["code"] == code  # the app hears why
        stats = settled(server)
        assert stats["ws_errors"] == {str(code): 1}


def test_a_failed_connection_does_not_disturb_the_others():
    with serve_ws(make_echo()) as server:
        with client(server) as good:
            bad = RawWs(server.port)
            bad.sock.sendall(raw_frame(3, b"nope"))
            assert bad.close_code()[0] == 1002
            good.send("unaffected")
            assert good.recv() == "unaffected"
            bad.close()
        settled(server)


# ---- the handshake and refusals ----------------------------------------------------------

def test_scope_subprotocols_and_accept_headers():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(scope)
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "chat.v2",
                    "headers": [(b"x-served-by", b"fastloop")]})
        await send({"type": "websocket.send", "text": "welcome"})

    with serve_ws(app) as server:
        with client(server, path="/room/42?x=1", subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["X-Served-By"] == "fastloop"
            assert ws.recv() == "welcome"
        scope = seen.get()
        assert scope["type"] == "websocket" and scope["scheme"] == "ws"
        assert scope["path"] == "/room/42" and scope["query_string"] == b"x=1"
        assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
        assert scope["asgi"]["version"] == "3.0"
        assert "websocket.http.response" in scope["extensions"]
        assert "method" not in scope
        assert (b"upgrade", b"websocket") in scope["headers"]
        settled(server)


@pytest.mark.parametrize("how, status", [("close", 403), ("return", 403), ("raise", 500)])
def test_refused_upgrades_get_an_http_answer(how, status):
    async def app(scope, receive, send):
        await receive()
        if how == "close":
            await send({"type": "websocket.close"})
        elif how == "raise":
            raise RuntimeError("refused (expected by the test)")

    with serve_ws(app) as server:
        with pytest.raises(InvalidStatus) as info:
            client(server)
        assert info.value.response.status_code == status
        settled(server)


def test_websocket_http_response_extension():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})

    with serve_ws(app) as server:
        with pytest.raises(InvalidStatus) as info:
            client(server)
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.body == b"who are you?"
        settled(server)


def test_other_versions_get_426_and_broken_upgrades_400():
    with serve_ws(make_echo()) as server:
        answer = raw_request(server.port, upgrade_request(version=b"8"))
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer
        no_key = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert raw_request(server.port, no_key).startswith(b"HTTP/1.1 400 ")
        stats = settled(server)
        assert stats["rejected"] == {"426": 1, "400": 1}


def test_plain_http_still_works_beside_websockets():
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain"})
        else:
            await make_echo()(scope, receive, send)

    with serve_ws(app) as server:
        with client(server) as ws:
            answer = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert answer.endswith(b"plain")
            ws.send("and this")
            assert ws.recv() == "and this"
        settled(server)


def test_ws_none_serves_upgrades_as_http():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"no websockets here"})

    with serve_ws(app, app_kw={"ws": "none"}) as server:
        answer = raw_request(server.port, upgrade_request())
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"no websockets here")
        assert seen.get() == "http"


# ---- pings from the server ---------------------------------------------------------------

def test_a_peer_that_never_answers_pings_is_closed():
    seen = Seen()
    with serve_ws(make_echo(seen), timeouts={"ws_ping": 0.2, "ws_pong": 0.3}) as server:
        raw = RawWs(server.port)  # it reads, but never answers a ping
        assert raw.next_event(timeout=3) == ("ping", b"ping")
        raw.wait_eof(timeout=3)
        seen.get()
        assert seen.get()["code"] == 1006
        stats = settled(server)
        assert stats["timeouts"] == {"ws_pong": 1}


def test_a_peer_that_answers_pings_stays():
    with serve_ws(make_echo(), timeouts={"ws_ping": 0.1, "ws_pong": 2.0}) as server:
        with client(server) as ws:  # the library answers pings by itself
            time.sleep(1.0)  # several pings, each answered
            ws.send("alive")
            assert ws.recv() == "alive"
            assert server.stats()["open"] == 1
        assert "timeouts" not in settled(server) or not settled(server)["timeouts"]


# ---- backpressure and vanishing clients --------------------------------------------------

def test_a_client_that_does_not_read_pauses_the_apps_send():
    progress = {"sent": 0}

    async def flood(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        try:
            while progress["sent"] < 512:
                await send({"type": "websocket.send", "bytes": chunk})
                progress["sent"] += 1
        except OSError:
            pass

    with serve_ws(flood, app_kw={"ws_per_message_deflate": False}) as server:
        raw = RawWs(server.port)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        time.sleep(1.0)
        stuck = progress["sent"]
        time.sleep(0.5)
        assert progress["sent"] == stuck < 512  # waiting in send(), not buffering 32 MiB
        raw.close()
        settled(server)


def test_an_app_that_does_not_receive_stops_the_server_reading():
    started = threading.Event()

    async def deaf(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        started.set()
        await asyncio.sleep(30)

    with serve_ws(deaf, stop_timeout=1.0) as server:
        raw = RawWs(server.port)
        assert started.wait(5)
        before = rss_kib()
        raw.sock.setblocking(False)
        sent = 0
        frame = raw_frame(BINARY, b"y" * 65536)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < (64 << 20):
            try:
                raw.sock.send(frame)
                sent += len(frame)
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < (48 << 20)  # the server stopped reading: TCP pushed back
        assert rss_kib() - before < 16 * 1024
        raw.close()


def test_a_client_vanishing_mid_message_leaks_nothing():
    seen = Seen()
    with serve_ws(make_echo(seen)) as server:
        fds = open_fds()
        for _ in range(20):
            raw = RawWs(server.port)
            raw.sock.sendall(raw_frame(BINARY, b"z" * 100000)[:5000])  # a message cut short
            raw.sock.close()
            seen.get()
            assert seen.get()["code"] == 1006
        stats = settled(server)
        assert stats["ws_opened"] == 20
        wait_for(lambda: open_fds() <= fds, what="descriptors released")
        wait_for(lambda: not server._handlers.bridge.running, what="every app task ended")


def test_websockets_count_toward_limit_concurrency():
    with serve_ws(make_echo(), limit_concurrency=2) as server:
        with client(server) as a, client(server) as b:
            answer = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503 ")
            for ws in (a, b):
                ws.send("still here")
                assert ws.recv() == "still here"
        settled(server)


def test_stop_closes_open_websockets():
    with serve_ws(make_echo(), stop_timeout=1.0) as server:
        with client(server) as ws:
            ws.send("x")
            assert ws.recv() == "x"
            t0 = time.monotonic()
            server.stop(timeout=1.0)
            assert time.monotonic() - t0 < 1.5
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=3)
        assert ws.close_code == 1001  # going away: the server stops
        stats = server.stats()
        assert stats["open"] == 0 and stats["accepted"] == stats["closed"]


# ---- a real framework --------------------------------------------------------------------

def test_fastapi_websocket_routes():
    pytest.importorskip("fastapi")
    import ws_framework_apps as apps

    with serve_ws(apps.app) as server:
        with client(server, path="/rooms/blue?token=secret") as ws:
            ws.send('{"n": 1}')
            assert ws.recv() == '{"room":"blue","echo":{"n":1}}'
            ws.close(1000)
        assert apps.SEEN.get(timeout=5) == 1000
        with pytest.raises(InvalidStatus) as info:
            client(server, path="/rooms/blue")  # closed before accepting: 403
        assert info.value.response.status_code == 403
        answer = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert answer.endswith(b'{"ok":true}')
        settled(server)


def test_a_decompression_bomb_is_stopped_at_ws_max_size():
    """A message small on the wire that inflates past ws_max_size: closed with 1009 after at
    most one step of output (so nothing of its inflated size is kept)."""
    seen = Seen()
    with serve_ws(make_echo(seen), app_kw={"ws_max_size": 64 * 1024}) as server:
        with client(server, compression="deflate") as ws:
            before = rss_kib()
            ws.send("a" * (256 << 20))  # 256 MiB of one letter: about 250 KiB deflated
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
        assert ws.close_code == 1009
        assert rss_kib() - before < 64 * 1024  # (the client's 256 MiB string is gone by now)
        seen.get()
        assert seen.get()["code"] == 1009
        assert settled(server)["ws_errors"] == {"1009": 1}
