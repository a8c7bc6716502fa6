"""The WebSocket engine against a real client's protocol code: the `websockets` library's
sans-I/O ClientProtocol (skipped when it is not installed).

The client makes the upgrade request, the engine answers it (ws_handshake) and the client must
accept that answer, its Sec-WebSocket-Accept and negotiated extension included. Then the client's
frames, compressed with its own permessage-deflate code, go through WsParser, and frames from
the engine's writer and compressor go back through the client's parser.
"""

import pytest
from fastloop._core import WsDeflater, WsParser, ws_close_frame, ws_control_frame, ws_frame, ws_handshake

websockets = pytest.importorskip("websockets")
from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402
from websockets.frames import Opcode  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

MESSAGES = ["hello " * 40, "hello " * 40, "κόσμε", "", b"\x00\xff" * 3000, b""]

SETUPS = [
    # name, client's permessage-deflate factory arguments (None: no compression), server settings
    ("no compression", None, {}),
    ("default deflate", {}, {}),
    ("client window limited by the server", {"client_max_window_bits": True},
     {"client_max_window_bits": 10}),
    ("server window asked by the client", {"server_max_window_bits": 10}, {}),
    ("no context takeover", {"server_no_context_takeover": True, "client_no_context_takeover": True}, {}),
    ("server wants no takeover", {},
     {"server_no_context_takeover": True, "client_no_context_takeover": True}),
    ("small windows", {"server_max_window_bits": 9, "client_max_window_bits": 9}, {}),
]


def connect(client_args, server_cfg):
    extensions = [] if client_args is None else [ClientPerMessageDeflateFactory(**client_args)]
    client = ClientProtocol(parse_uri("ws://127.0.0.1/chat"), extensions=extensions,
                            subprotocols=["b", "a"])
    client.send_request(client.connect())
    request = b"".join(client.data_to_send())
    status, answer, params = ws_handshake(request, "a, b", server_cfg)
    assert status == 101
    client.receive_data(answer)
    assert [e.status_code for e in client.events_received()] == [101]
    assert client.state is State.OPEN, client.handshake_exc
    assert client.subprotocol == "a"
    assert (params is None) == (client_args is None)
    return client, params


def client_sends(client, messages):
    for m in messages:
        if isinstance(m, str):
            client.send_text(m.encode())
        else:
            client.send_binary(m)
    client.send_text(b"frag", fin=False)  # a fragmented message with a ping in between
    client.send_ping(b"ping")
    client.send_continuation("mént".encode(), fin=True)
    client.send_close(1000, "done")
    return b"".join(client.data_to_send())


@pytest.mark.parametrize("name,client_args,server_cfg", SETUPS, ids=[s[0] for s in SETUPS])
def test_client_frames_through_the_parser(name, client_args, server_cfg):
    client, params = connect(client_args, server_cfg)
    stream = client_sends(client, MESSAGES)
    expected = [("text", m) if isinstance(m, str) else ("binary", m) for m in MESSAGES]
    expected += [("ping", b"ping"), ("text", "fragmént"), ("close", 1000, "done")]
    for split in (None, 1, 7):
        p = WsParser(deflate=params, inflate_room=100)
        events = []
        chunks = [stream] if split is None else [stream[i:i + split] for i in range(0, len(stream), split)]
        for chunk in chunks:
            events += p.feed(chunk)
        assert events == expected


@pytest.mark.parametrize("name,client_args,server_cfg", SETUPS, ids=[s[0] for s in SETUPS])
def test_server_frames_through_the_client(name, client_args, server_cfg):
    client, params = connect(client_args, server_cfg)
    deflater = None
    if params is not None:
        deflater = WsDeflater(params["server_max_window_bits"], params["server_no_context_takeover"])
    stream = b""
    for m in MESSAGES:
        data = m.encode() if isinstance(m, str) else m
        opcode = 1 if isinstance(m, str) else 2
        if deflater is not None:
            stream += ws_frame(opcode, deflater.compress(data), rsv1=True)
        else:
            stream += ws_frame(opcode, data)
    stream += ws_control_frame(9, b"srv") + ws_close_frame(1001, "bye".encode())
    client.receive_data(stream)
    frames = client.events_received()
    got = [(f.opcode, f.data) for f in frames]
    want = [(Opcode.TEXT if isinstance(m, str) else Opcode.BINARY, m.encode() if isinstance(m, str) else m)
            for m in MESSAGES]
    assert got == want + [(Opcode.PING, b"srv"), (Opcode.CLOSE, b"\x03\xe9bye")]
    assert client.close_rcvd.code == 1001 and client.close_rcvd.reason == "bye"
