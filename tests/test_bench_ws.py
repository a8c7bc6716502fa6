"""`fastloop bench ws://...`: the WebSocket mode, against a real server (the `websockets`
library, sync API, on a thread per connection) and against raw sockets for the handshake
checks a well-behaved server never exercises.

What must hold: every connection does the RFC 6455 handshake and checks Sec-WebSocket-Accept;
messages are masked (websockets closes the connection on an unmasked frame, so a successful
echo run proves it), of the asked size and type; pings are answered; a close frame from the
server is answered with its code and counted, with the message it cut off booked as failed;
and the books balance exactly as in HTTP mode.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import threading
from typing import Callable, Iterator, List

import pytest

from bench_servers import canned
from fastloop import _bench, bench
from helpers import LOOPBACK

websockets_sync = pytest.importorskip("websockets.sync.server")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@contextlib.contextmanager
def ws_server(handler: Callable) -> Iterator[int]:
    """A websockets server on loopback (no compression: bench negotiates no extension) running
    handler(connection) per connection; yields its port and stops it on the way out."""
    server = websockets_sync.serve(handler, LOOPBACK, 0, compression=None, ping_interval=None,
                                   close_timeout=2, max_size=None)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()
        t.join(5)


class Echo:
    """Echoes every message; records each message's type and size and the close code each
    connection received from bench."""

    def __init__(self, ping_first: bool = False) -> None:
        self.messages: List[tuple] = []
        self.close_codes: List[int] = []
        self.pongs: List[bool] = []
        self.ping_first = ping_first
        self.lock = threading.Lock()

    def __call__(self, ws) -> None:
        if self.ping_first:
            self.pongs.append(ws.ping().wait(5))  # bench must answer before its first message
        for message in ws:
            with self.lock:
                self.messages.append((type(message), len(message)))
            ws.send(message)
        rcvd = ws.protocol.close_rcvd
        self.close_codes.append(rcvd.code if rcvd else None)


def assert_books_balance(r: bench.BenchResult) -> None:
    assert r.sent == r.requests + r.sent_unanswered
    assert r.sent_unanswered + r.not_sent == r.failed + r.unfinished


# ---- wskey.h -------------------------------------------------------------------------------------

def test_accept_key_matches_rfc6455_example():
    # RFC 6455 section 1.3: this key must be answered with this accept value.
    assert _bench.ws_accept(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("n", [0, 1, 2, 3, 20, 55, 56, 63, 64, 65, 119, 120, 1000])
def test_sha1_and_base64_match_the_stdlib(n):
    data = os.urandom(n)
    assert _bench.sha1(data) == hashlib.sha1(data).digest()
    assert _bench.base64(data) == base64.b64encode(data)
    key = base64.b64encode(data[:16].ljust(16, b"k"))
    assert _bench.ws_accept(key) == base64.b64encode(hashlib.sha1(key + GUID).digest())


# ---- echo --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size,binary", [(64, False), (1000, True), (70_000, False), (0, True)],
                         ids=["64 text", "16-bit length binary", "64-bit length text", "empty"])
def test_echo_round_trips(size, binary):
    echo = Echo()
    with ws_server(echo) as port:
        r = bench.run(f"ws://{LOOPBACK}:{port}/echo", connections=4, requests=200,
                      ws_message_size=size, ws_binary=binary)
    assert r.errors == {} and r.failed == 0
    assert r.requests == r.sent == 200
    assert r.status == {101: 4} and r.ws is not None
    assert r.ws["upgraded"] == 4 and r.ws["refused"] == 0 and r.ws["closed_by_server"] == 0
    assert r.connections["established"] == 4 and r.connections["never_sent"] == 0
    assert echo.messages == [(bytes if binary else str, size)] * 200
    assert r.latency.count == 200
    # bench said goodbye to each connection with a normal close when its budget was spent.
    assert echo.close_codes == [1000] * 4
    assert_books_balance(r)


def test_pings_are_answered():
    echo = Echo(ping_first=True)
    with ws_server(echo) as port:
        r = bench.run(f"ws://{LOOPBACK}:{port}/", connections=2, requests=20)
    assert r.requests == 20 and r.errors == {}
    assert echo.pongs == [True, True]


def test_duration_run_and_json_output(capsys):
    with ws_server(Echo()) as port:
        rc = bench.main(["-c", "3", "-d", "300ms", "--json", f"ws://{LOOPBACK}:{port}/"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["mode"] == "websocket, 64-byte text messages"
    assert data["requests"] > 0 and data["rps"] > 0 and data["latency_us"]["p99"] > 0
    assert data["ws"]["upgraded"] == 3 and data["status"] == {"101": 3}
    assert data["sent"] == data["requests"] + data["sent_unanswered"]
    assert data["connections"]["established"] == 3


def test_text_report_names_round_trips():
    with ws_server(Echo()) as port:
        r = bench.run(f"ws://{LOOPBACK}:{port}/", connections=1, requests=10)
    report = bench.format_report(r)
    assert "10 round-trips" in report and "Round-trips/sec:" in report
    assert "Handshakes:   101: 1" in report and "upgraded 1" in report


def test_fragmented_echoes_complete_on_their_last_fragment():
    def fragmented(ws) -> None:
        for message in ws:
            ws.send([message[:10], message[10:20], message[20:]])  # three frames, one message

    with ws_server(fragmented) as port:
        r = bench.run(f"ws://{LOOPBACK}:{port}/", connections=2, requests=40)
    assert r.requests == 40 and r.errors == {} and r.latency.count == 40


class RawWsServer:
    """One connection: answers the upgrade by hand, then reads `frames` client frames raw,
    keeping each one's mask bit, masking key and unmasked payload, and echoes each."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.seen: List[tuple] = []
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(1)
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            f = conn.makefile("rb")
            key = b""
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            for _ in range(self.frames):
                b0, b1 = f.read(2)
                n = b1 & 0x7F  # the test's messages are short
                mask = f.read(4)
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(f.read(n)))
                self.seen.append((b0, bool(b1 & 0x80), mask, payload))
                conn.sendall(bytes([0x80 | (b0 & 0x0F), n]) + payload)

    def stop(self) -> None:
        self.thread.join(5)
        self.sock.close()


def test_every_client_frame_is_masked_with_a_fresh_key():
    raw = RawWsServer(frames=20)
    try:
        r = bench.run(f"ws://{LOOPBACK}:{raw.port}/", connections=1, requests=20,
                      ws_message_size=100, ws_binary=True)
    finally:
        raw.stop()
    assert r.requests == 20
    assert [(b0, masked, payload) for b0, masked, _, payload in raw.seen] == \
        [(0x82, True, b"x" * 100)] * 20  # final binary frames, masked, the payload intact
    assert len({mask for _, _, mask, _ in raw.seen}) == 20


# ---- the server closes -------------------------------------------------------------------------------

def test_server_close_is_answered_and_counted():
    # Each connection echoes 5 messages, then the server starts the closing handshake with 1001
    # while bench's 6th message is on its way: that one is lost, and booked so.
    replies: List[object] = []

    def five_then_close(ws) -> None:
        for _ in range(5):
            ws.send(ws.recv())
        ws.close(1001, "going away")
        replies.append(ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None)

    with ws_server(five_then_close) as port:
        r = bench.run(f"ws://{LOOPBACK}:{port}/", connections=1, requests=18)
    assert r.requests == 15 and r.failed == 3 and r.errors == {"WSCLOSE": 3}
    assert r.ws["closed_by_server"] == 3 and r.ws["close_lost"] == 3
    assert r.ws["close_codes"] == {"1001": 3}
    assert replies == [1001] * 3  # bench echoed the code, completing each closing handshake
    assert r.connections["established"] == 3 == r.connections["closed_by_peer_eof"]
    assert r.sent == 18 and r.sent_unanswered == 3
    assert_books_balance(r)
    assert "WSCLOSE" in bench.format_report(r)


def test_server_dropping_tcp_mid_message_is_premature_eof():
    def one_then_drop(ws) -> None:
        ws.send(ws.recv())
        ws.recv()
        ws.close_socket()  # no close frame: the TCP connection just ends

    with ws_server(one_then_drop) as port:
        r = bench.run(f"ws://{LOOPBACK}:{port}/", connections=1, requests=4)
    assert r.requests == 2 and r.failed == 2
    assert set(r.errors) <= {"EOF", "ECONNRESET"} and sum(r.errors.values()) == 2
    assert r.ws["closed_by_server"] == 0
    assert_books_balance(r)


# ---- the handshake is checked -------------------------------------------------------------------------

def test_refused_upgrade_is_counted():
    with canned(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n") as srv:
        r = bench.run(f"ws://{LOOPBACK}:{srv.port}/", connections=1, requests=3)
    assert r.requests == 0 and r.status == {404: 3}
    assert r.ws["refused"] == 3 and r.ws["upgraded"] == 0
    assert r.errors == {"EPROTO": 3} and r.not_sent == 3 and r.sent == 0
    assert r.connections["never_sent"] == 3  # upgraded never, so no message went out
    assert_books_balance(r)


def test_wrong_accept_key_is_refused():
    # Upgrade and Connection are right, the Accept is the RFC example's: never this key's.
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    with canned(response) as srv:
        r = bench.run(f"ws://{LOOPBACK}:{srv.port}/", connections=1, requests=2)
    assert r.requests == 0 and r.ws["refused"] == 2 and r.ws["upgraded"] == 0
    assert r.errors == {"EPROTO": 2} and r.status == {101: 2}


def test_ws_options_that_cannot_apply_are_rejected():
    for kw in ({"pipeline": 2}, {"keepalive": False}, {"body": b"x"}, {"method": "POST"}):
        with pytest.raises(ValueError):
            bench.run("ws://127.0.0.1:1/", requests=1, **kw)
    with pytest.raises(ValueError):
        bench.run("wss://127.0.0.1:1/", requests=1)
