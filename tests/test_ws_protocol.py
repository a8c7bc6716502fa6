"""The WebSocket protocol engine (fastloop/core/ws*.pyx), driven through its Python view.

Frames are built here by an independent reference framer (`frame`), one line per named case,
and every case is fed whole, one byte at a time and in random splits: the events, and for a
failure the stream offset of the byte that failed it, must be the same for all three. The
UTF-8 validator is checked against CPython's incremental decoder, SHA-1 against hashlib and
deflate against the zlib module.
"""

import base64
import hashlib
import os
import random
import zlib

import pytest
from fastloop._core import (WsDeflater, WsParser, ws_accept, ws_close_frame, ws_control_frame, ws_frame,
                            ws_handshake, ws_parse_count, ws_sha1, ws_utf8_check)
from hypothesis import given, settings
from hypothesis import strategies as st

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
KEY = b"\x37\xfa\x21\x3d"
TAIL = b"\x00\x00\xff\xff"


def frame(opcode, payload=b"", fin=True, rsv=0, mask=KEY, length=None):
    """A frame as a client sends it. length: force the 7, 16 or 64-bit length encoding."""
    n = len(payload)
    if length is None:
        length = 7 if n < 126 else 16 if n < 65536 else 64
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask is not None else 0
    if length == 7:
        head += bytes([bit | n])
    elif length == 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return code.to_bytes(2, "big") + reason


def pieces(data, mode, seed=0):
    if mode == "whole":
        return [data]
    if mode == "bytewise":
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        k = rng.randint(1, 9)
        out.append(data[i:i + k])
        i += k
    return out


def run(data, mode="whole", seed=0, **kw):
    """Feeds data in pieces; returns (events, error_at, index of the piece each event came in)."""
    p = WsParser(**kw)
    events, where = [], []
    for i, piece in enumerate(pieces(data, mode, seed)):
        got = p.feed(piece)
        events += got
        where += [i] * len(got)
    return events, p.error_at, where


MODES = ["whole", "bytewise", "random"]
E1002 = [("error", 1002)]
E1007 = [("error", 1007)]
E1009 = [("error", 1009)]
EURO = "€".encode()                  # e2 82 ac
BIG = bytes(range(256)) * 300         # 76800 bytes: a 64-bit length

CASES = [
    # name, stream, expected events (errors as ("error", code)), WsParser keywords
    ("text", frame(TEXT, b"hello"), [("text", "hello")], {}),
    ("binary", frame(BINARY, b"\x00\xff"), [("binary", b"\x00\xff")], {}),
    ("empty text", frame(TEXT), [("text", "")], {}),
    ("empty binary", frame(BINARY), [("binary", b"")], {}),
    ("125 bytes, 7-bit", frame(BINARY, b"x" * 125), [("binary", b"x" * 125)], {}),
    ("126 bytes, 16-bit", frame(BINARY, b"x" * 126), [("binary", b"x" * 126)], {}),
    ("65535 bytes, 16-bit", frame(BINARY, b"y" * 65535), [("binary", b"y" * 65535)], {}),
    ("64-bit length", frame(BINARY, BIG), [("binary", BIG)], {}),
    ("non-minimal 16-bit length", frame(TEXT, b"abc", length=16), [("text", "abc")], {}),
    ("non-minimal 64-bit length", frame(TEXT, b"abc", length=64), [("text", "abc")], {}),
    ("zero mask key", frame(TEXT, b"abc", mask=b"\0\0\0\0"), [("text", "abc")], {}),
    ("multibyte text", frame(TEXT, "κόσμε 𝄞".encode()), [("text", "κόσμε 𝄞")], {}),
    ("two messages", frame(TEXT, b"a") + frame(BINARY, b"b"), [("text", "a"), ("binary", b"b")], {}),
    ("fragmented text", frame(TEXT, b"ab", fin=False) + frame(CONT, b"cd", fin=False) + frame(CONT, b"e"),
     [("text", "abcde")], {}),
    ("fragmented binary", frame(BINARY, b"\1", fin=False) + frame(CONT, b"\2"), [("binary", b"\1\2")], {}),
    ("empty fragments", frame(TEXT, fin=False) + frame(CONT, fin=False) + frame(CONT, b"x") +
     frame(TEXT, fin=False) + frame(CONT), [("text", "x"), ("text", "")], {}),
    ("utf-8 split across fragments", frame(TEXT, EURO[:1], fin=False) + frame(CONT, EURO[1:2], fin=False) +
     frame(CONT, EURO[2:]), [("text", "€")], {}),
    ("ping between fragments", frame(TEXT, b"ab", fin=False) + frame(PING, b"p") + frame(CONT, b"c"),
     [("ping", b"p"), ("text", "abc")], {}),
    ("pong and close between fragments", frame(TEXT, b"a", fin=False) + frame(PONG, b"q") +
     frame(CLOSE, close_payload(1000)), [("pong", b"q"), ("close", 1000, "")], {}),
    ("ping", frame(PING, b"hello"), [("ping", b"hello")], {}),
    ("empty ping", frame(PING), [("ping", b"")], {}),
    ("ping of 125 bytes", frame(PING, b"p" * 125), [("ping", b"p" * 125)], {}),
    ("pong", frame(PONG, b"x"), [("pong", b"x")], {}),
    ("close without code", frame(CLOSE), [("close", 1005, "")], {}),
    ("close with code", frame(CLOSE, close_payload(1001)), [("close", 1001, "")], {}),
    ("close with reason", frame(CLOSE, close_payload(4000, "bye ☺".encode())),
     [("close", 4000, "bye ☺")], {}),
    ("nothing read after close", frame(CLOSE, close_payload(1000)) + frame(TEXT, b"late") + b"\xff\xff",
     [("close", 1000, "")], {}),
    ("size limit exactly", frame(BINARY, b"z" * 10), [("binary", b"z" * 10)], {"max_size": 10}),
    ("server frames, client side", frame(TEXT, b"hi", mask=None), [("text", "hi")], {"from_server": True}),
    ("incomplete header", frame(TEXT, b"x" * 200)[:3], [], {}),
    ("incomplete payload", frame(TEXT, b"abcdef")[:-1], [], {}),
    # Protocol errors: 1002
    ("unmasked client frame", frame(TEXT, b"x", mask=None), E1002, {}),
    ("masked server frame", frame(TEXT, b"x"), E1002, {"from_server": True}),
    ("rsv1 without deflate", frame(TEXT, b"x", rsv=RSV1), E1002, {}),
    ("rsv2", frame(TEXT, b"x", rsv=RSV2), E1002, {}),
    ("rsv3", frame(BINARY, b"x", rsv=RSV3), E1002, {}),
    ("rsv on a ping", frame(PING, b"x", rsv=RSV3), E1002, {}),
    *[(f"reserved opcode {op}", frame(op, b"x"), E1002, {}) for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)],
    ("fragmented ping", frame(PING, b"x", fin=False), E1002, {}),
    ("fragmented close", frame(CLOSE, fin=False), E1002, {}),
    ("ping of 126 bytes", frame(PING, b"p" * 126), E1002, {}),
    ("continuation without a message", frame(CONT, b"x"), E1002, {}),
    ("continuation after a whole message", frame(TEXT, b"a") + frame(CONT, b"b"),
     [("text", "a")] + E1002, {}),
    ("new message inside a fragmented one", frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), E1002, {}),
    ("binary inside fragmented text", frame(TEXT, b"a", fin=False) + frame(BINARY, b"b"), E1002, {}),
    ("64-bit length with the high bit", frame(BINARY, length=64)[:2] + b"\x80" + b"\0" * 7 + KEY, E1002, {}),
    ("valid message, then a bad frame", frame(TEXT, b"ok") + frame(TEXT, b"x", rsv=RSV2),
     [("text", "ok")] + E1002, {}),
    ("close of one byte", frame(CLOSE, b"\x03"), E1002, {}),
    # Size limit: 1009, seen at the length field
    ("over the size limit", frame(BINARY, b"z" * 11), E1009, {"max_size": 10}),
    ("over the limit across fragments", frame(BINARY, b"z" * 6, fin=False) + frame(CONT, b"z" * 6),
     E1009, {"max_size": 10}),
    ("huge length refused before its payload",
     frame(BINARY, length=64)[:2] + (2**62).to_bytes(8, "big") + KEY,
     E1009, {}),
    # UTF-8: 1007
    ("invalid utf-8", frame(TEXT, b"a\xffb"), E1007, {}),
    ("overlong encoding", frame(TEXT, b"\xc0\xaf"), E1007, {}),
    ("overlong 3-byte", frame(TEXT, b"\xe0\x80\xaf"), E1007, {}),
    ("surrogate", frame(TEXT, b"\xed\xa0\x80"), E1007, {}),
    ("above U+10FFFF", frame(TEXT, b"\xf4\x90\x80\x80"), E1007, {}),
    ("text ends inside a character", frame(TEXT, EURO[:2]), E1007, {}),
    ("fragments end inside a character", frame(TEXT, b"a", fin=False) + frame(CONT, EURO[:1]), E1007, {}),
    ("binary is not checked", frame(BINARY, b"\xff\xfe"), [("binary", b"\xff\xfe")], {}),
    ("close reason not utf-8", frame(CLOSE, close_payload(1000, b"\xff")), E1007, {}),
    ("close reason ends inside a character", frame(CLOSE, close_payload(1000, EURO[:2])), E1007, {}),
]


def strip(events):
    return [e[:2] if e[0] == "error" else e for e in events]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,stream,expected,kw", CASES, ids=[c[0] for c in CASES])
def test_case(name, stream, expected, kw, mode):
    events, error_at, _ = run(stream, mode, **kw)
    assert strip(events) == expected
    whole_events, whole_error_at, _ = run(stream, "whole", **kw)
    assert error_at == whole_error_at


CLOSE_CODES_OK = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
CLOSE_CODES_BAD = [0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", CLOSE_CODES_OK + CLOSE_CODES_BAD)
def test_close_code_table(code):
    events, _, _ = run(frame(CLOSE, close_payload(code, b"why")))
    if code in CLOSE_CODES_OK:
        assert events == [("close", code, "why")]
        assert ws_close_frame(code, b"why") == frame(CLOSE, close_payload(code, b"why"), mask=None)
    else:
        assert strip(events) == E1002
        with pytest.raises(ValueError):
            ws_close_frame(code, b"why")


# Unicode 15, table 3-7: the well-formed UTF-8 byte sequences, as (lead range, ranges of the
# bytes that may follow it).
_WELL_FORMED = [((0x00, 0x7F), []), ((0xC2, 0xDF), [(0x80, 0xBF)]),
                ((0xE0, 0xE0), [(0xA0, 0xBF), (0x80, 0xBF)]),
                ((0xE1, 0xEC), [(0x80, 0xBF), (0x80, 0xBF)]),
                ((0xED, 0xED), [(0x80, 0x9F), (0x80, 0xBF)]),
                ((0xEE, 0xEF), [(0x80, 0xBF), (0x80, 0xBF)]),
                ((0xF0, 0xF0), [(0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF)]),
                ((0xF1, 0xF3), [(0x80, 0xBF), (0x80, 0xBF), (0x80, 0xBF)]),
                ((0xF4, 0xF4), [(0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF)])]


def first_bad_byte(data):
    """The oracle: the first k such that data[:k+1] begins no valid UTF-8 text, from the
    table above. (CPython's incremental decoder is no oracle here: with final=False it lets
    b"\\xed\\xa0", a surrogate's start, through until a third byte comes.)"""
    k = 0
    while k < len(data):
        rest = next((follow for (lo, hi), follow in _WELL_FORMED if lo <= data[k] <= hi), None)
        if rest is None:
            return k
        for j, (lo, hi) in enumerate(rest, 1):
            if k + j >= len(data):
                return -1  # incomplete, but it may still be completed
            if not lo <= data[k + j] <= hi:
                return k + j
        k += 1 + len(rest)
    return -1


def test_invalid_utf8_in_second_fragment_fails_at_the_first_bad_byte():
    # Autobahn 6.4.x: the first fragment is valid; the second turns bad at the A0 after ED
    # (a surrogate) while its frame still has bytes to come. The error must come with that byte.
    first = frame(TEXT, "κόσμε".encode(), fin=False)
    second_payload = "x".encode() + b"\xed\xa0\x80" + b"edited"
    stream = first + frame(CONT, second_payload)
    bad = len(first) + 6 + 2  # header and mask, then 'x' and ED: A0 is the bad byte
    assert stream[bad] ^ KEY[2] == 0xA0
    events, error_at, where = run(stream, "bytewise")
    assert strip(events) == E1007
    assert error_at == bad
    assert where == [bad]  # reported on feeding that very byte, not at the end of the frame


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=20).map(lambda s: s.encode()),
       st.integers(min_value=0, max_value=40))
def test_utf8_validator_matches_cpython(data, cut):
    expected = first_bad_byte(data)
    bad, state = ws_utf8_check(data)
    assert bad == expected
    if bad < 0:
        try:
            data.decode()
            complete = True
        except UnicodeDecodeError:
            complete = False
        assert (state == 0) == complete
        # Fed in two pieces, carrying the state across, the verdict is the same.
        bad1, s1 = ws_utf8_check(data[:cut])
        bad2, s2 = ws_utf8_check(data[cut:], s1)
        assert bad1 < 0 and bad2 < 0 and s2 == state
    else:
        # Text messages fail at the same byte, however the bytes are fragmented.
        if cut < len(data):
            msg = frame(TEXT, data[:cut], fin=False) + frame(CONT, data[cut:])
        else:
            msg = frame(TEXT, data)
        events, error_at, _ = run(msg, "random", seed=cut)
        assert strip(events) == E1007


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["text", "binary", "ping"]), st.binary(max_size=300),
                          st.integers(min_value=1, max_value=4), st.binary(min_size=4, max_size=4)),
                max_size=6),
       st.integers(min_value=0, max_value=2**32))
def test_writer_to_masked_client_frames_round_trip(messages, seed):
    # Frames from the writer, masked with the client's key (ws_frame(mask=...)), fragmented and
    # fed in random pieces, come back as the messages that were written.
    stream, expected = b"", []
    for kind, payload, parts, key in messages:
        if kind == "ping":
            payload = payload[:125]
            stream += ws_frame(PING, payload, mask=key)
            expected.append(("ping", payload))
            continue
        if kind == "text":
            payload = payload.decode("latin-1").encode()  # valid UTF-8, multibyte included
        opcode = TEXT if kind == "text" else BINARY
        step = max(1, len(payload) // parts)
        chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        for i, chunk in enumerate(chunks):
            stream += ws_frame(opcode if i == 0 else CONT, chunk, fin=i == len(chunks) - 1, mask=key)
        expected.append(("text", payload.decode()) if kind == "text" else ("binary", payload))
    events, error_at, _ = run(stream, "random", seed=seed)
    assert events == expected and error_at is None


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]), st.booleans(), st.booleans(),
       st.sampled_from([TEXT, BINARY, CONT, PING]))
def test_writer_header_matches_reference(n, fin, rsv1, opcode):
    payload = b"a" * n
    assert ws_frame(opcode, payload, fin, rsv1) == frame(opcode, payload, fin, RSV1 if rsv1 else 0, mask=None)
    assert ws_frame(opcode, payload, fin, rsv1, KEY) == frame(opcode, payload, fin, RSV1 if rsv1 else 0)


def test_writer_control_frames():
    assert ws_control_frame(PONG, b"abc") == frame(PONG, b"abc", mask=None)
    assert ws_control_frame(PING, b"p" * 125) == frame(PING, b"p" * 125, mask=None)
    assert ws_close_frame() == frame(CLOSE, mask=None)
    with pytest.raises(ValueError):
        ws_control_frame(PING, b"p" * 126)
    with pytest.raises(ValueError):
        ws_close_frame(1000, b"r" * 124)
    assert ws_close_frame(1000, b"r" * 123) == frame(CLOSE, close_payload(1000, b"r" * 123), mask=None)


def test_parse_count_runs_the_same_parser_without_the_gil():
    stream = frame(TEXT, b"ab", fin=False) + frame(PING) + frame(CONT, b"c") + frame(BINARY, BIG)
    assert ws_parse_count(bytearray(stream)) == (3, 2, 1, 0)
    assert ws_parse_count(bytearray(stream + frame(TEXT, b"\xff") + frame(TEXT, b"x"))) == (3, 2, 1, 1007)
    assert ws_parse_count(bytearray(frame(BINARY, b"x" * 11)), 10) == (0, 0, 0, 1009)


def test_a_server_stream_parses_on_the_client_side():
    stream = (ws_frame(TEXT, b"hi") + ws_control_frame(PING, b"x") + ws_frame(BINARY, BIG) +
              ws_close_frame(1000))
    for mode in MODES:
        events, _, _ = run(stream, mode, from_server=True)
        assert events == [("text", "hi"), ("ping", b"x"), ("binary", BIG), ("close", 1000, "")]


# --- The handshake ------------------------------------------------------------------------

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="     # RFC 6455 1.3
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade(*extra, method=b"GET", version=b"HTTP/1.1", key=RFC_KEY, ws_version=b"13", conn=b"Upgrade",
            up=b"websocket"):
    lines = [method + b" /chat " + version, b"Host: x"]
    if up is not None:
        lines.append(b"Upgrade: " + up)
    if conn is not None:
        lines.append(b"Connection: " + conn)
    if key is not None:
        lines.append(b"Sec-WebSocket-Key: " + key)
    if ws_version is not None:
        lines.append(b"Sec-WebSocket-Version: " + ws_version)
    return b"\r\n".join(lines + list(extra)) + b"\r\n\r\n"


HANDSHAKES = [
    # name, head, status
    ("valid", upgrade(), 101),
    ("case-insensitive tokens", upgrade(up=b"WebSocket", conn=b"keep-alive, UPGRADE"), 101),
    ("upgrade in a list", upgrade(up=b"h2c, websocket"), 101),
    ("not an upgrade", upgrade(up=None, conn=None, key=None, ws_version=None), 0),
    ("upgrade to something else", upgrade(up=b"h2c"), 0),
    ("no connection upgrade", upgrade(conn=b"keep-alive"), 400),
    ("no connection header", upgrade(conn=None), 400),
    ("POST", upgrade(method=b"POST"), 400),
    ("HTTP/1.0", upgrade(version=b"HTTP/1.0"), 400),
    ("no key", upgrade(key=None), 400),
    ("two keys", upgrade(b"Sec-WebSocket-Key: " + RFC_KEY), 400),
    ("key of 15 bytes", upgrade(key=base64.b64encode(b"x" * 15)), 400),
    ("key of 17 bytes", upgrade(key=base64.b64encode(b"x" * 17)), 400),
    ("key not base64", upgrade(key=b"dGhlIHNhbXBsZSBub25jZ*=="), 400),
    ("no version", upgrade(ws_version=None), 400),
    ("two versions", upgrade(b"Sec-WebSocket-Version: 13"), 400),
    ("version 8", upgrade(ws_version=b"8"), 426),
    ("version 14", upgrade(ws_version=b"14"), 426),
    ("version 013", upgrade(ws_version=b"013"), 426),
]


@pytest.mark.parametrize("name,head,status", HANDSHAKES, ids=[h[0] for h in HANDSHAKES])
def test_handshake(name, head, status):
    got, answer, params = ws_handshake(head)
    assert got == status
    if status == 101:
        assert answer == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n\r\n")
    elif status == 426:
        assert answer.startswith(b"HTTP/1.1 426 ") and b"\r\nSec-WebSocket-Version: 13\r\n" in answer
    else:
        assert answer == b""
    assert params is None


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_accept_matches_hashlib(raw):
    key = base64.b64encode(raw)
    expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert ws_accept(key) == expected
    assert ws_handshake(upgrade(key=key))[1].split(b"Sec-WebSocket-Accept: ")[1][:28] == expected


def test_sha1_at_every_padding_boundary():
    for n in list(range(0, 140)) + [1000, 4096, 65537]:
        data = os.urandom(n)
        assert ws_sha1(data) == hashlib.sha1(data).digest(), n


SUBPROTOCOLS = [
    # name, server's list, client's headers, chosen
    ("server preference wins", "a, b", [b"b, a"], b"a"),
    ("second of the server's", "a,b", [b"c, b"], b"b"),
    ("none in common", "a,b", [b"c"], None),
    ("none offered", "a", [], None),
    ("case-sensitive", "chat", [b"Chat"], None),
    ("across two headers", "x,y", [b"a", b"y"], b"y"),
    ("no partial match", "chat", [b"chatty, cha"], None),
]


@pytest.mark.parametrize("name,server,client,chosen", SUBPROTOCOLS, ids=[s[0] for s in SUBPROTOCOLS])
def test_subprotocol(name, server, client, chosen):
    head = upgrade(*[b"Sec-WebSocket-Protocol: " + c for c in client])
    status, answer, _ = ws_handshake(head, server)
    assert status == 101
    if chosen is None:
        assert b"Sec-WebSocket-Protocol" not in answer
    else:
        assert b"\r\nSec-WebSocket-Protocol: " + chosen + b"\r\n" in answer


def ext_answer(answer):
    for line in answer.split(b"\r\n"):
        if line.startswith(b"Sec-WebSocket-Extensions: "):
            return line.split(b": ", 1)[1].decode()
    return None


PMD = "permessage-deflate"
CMWB, SMWB = "; client_max_window_bits", "; server_max_window_bits"
OFFERS = [
    # name, offers (one header each), server settings, response (None: declined)
    ("plain", [PMD], {}, PMD),
    ("client_max_window_bits without value", [PMD + CMWB], {}, PMD),
    ("client window limited by the server", [PMD + CMWB], {"client_max_window_bits": 10},
     PMD + CMWB + "=10"),
    ("client window not limitable unasked", [PMD], {"client_max_window_bits": 10}, PMD),
    ("client_max_window_bits with value", [PMD + CMWB + "=12"], {}, PMD + CMWB + "=12"),
    ("client value above the server's", [PMD + CMWB + "=12"], {"client_max_window_bits": 9},
     PMD + CMWB + "=9"),
    ("server_max_window_bits", [PMD + SMWB + "=10"], {}, PMD + SMWB + "=10"),
    ("server window 8", [PMD + SMWB + "=8"], {}, PMD + SMWB + "=8"),
    ("server window below the server's own", [PMD + SMWB + "=14"], {"server_max_window_bits": 11},
     PMD + SMWB + "=11"),
    ("server's own smaller window", [PMD], {"server_max_window_bits": 12}, PMD + SMWB + "=12"),
    ("no context takeover both", [PMD + "; server_no_context_takeover; client_no_context_takeover"], {},
     PMD + "; server_no_context_takeover; client_no_context_takeover"),
    ("server asks no takeover", [PMD],
     {"server_no_context_takeover": True, "client_no_context_takeover": True},
     PMD + "; server_no_context_takeover; client_no_context_takeover"),
    ("quoted value", [PMD + '; server_max_window_bits="10"'], {}, PMD + SMWB + "=10"),
    ("case and spaces", ["Permessage-Deflate ;  Client_Max_Window_Bits = 11 "], {}, PMD + CMWB + "=11"),
    ("first acceptable of a list", [PMD + SMWB + "=7, " + PMD + CMWB], {}, PMD),
    ("other extension first", ["x-webkit-deflate-frame; no_context_takeover, " + PMD], {}, PMD),
    ("second header", ["foo", PMD + "; server_no_context_takeover"], {},
     PMD + "; server_no_context_takeover"),
    ("only another extension", ["x-webkit-deflate-frame"], {}, None),
    # Malformed offers are declined
    ("server_max_window_bits without value", [PMD + SMWB], {}, None),
    ("window bits 7", [PMD + CMWB + "=7"], {}, None),
    ("window bits 16", [PMD + SMWB + "=16"], {}, None),
    ("leading zero", [PMD + SMWB + "=010"], {}, None),
    ("not a number", [PMD + CMWB + "=x"], {}, None),
    ("empty quoted value", [PMD + '; client_max_window_bits=""'], {}, None),
    ("no_context_takeover with a value", [PMD + "; server_no_context_takeover=1"], {}, None),
    ("unknown parameter", [PMD + "; foo"], {}, None),
    ("repeated parameter", [PMD + "; client_no_context_takeover; client_no_context_takeover"], {}, None),
    ("repeated window bits", [PMD + SMWB + "=10; server_max_window_bits=10"], {}, None),
    ("empty parameter", [PMD + ";;"], {}, None),
    ("unterminated quote", [PMD + '; server_max_window_bits="10'], {}, None),
    ("malformed list stops there", [PMD + " x, " + PMD], {}, None),
]


@pytest.mark.parametrize("name,offers,cfg,response", OFFERS, ids=[o[0] for o in OFFERS])
def test_deflate_negotiation(name, offers, cfg, response):
    head = upgrade(*[b"Sec-WebSocket-Extensions: " + o.encode() for o in offers])
    status, answer, params = ws_handshake(head, "", cfg)
    assert status == 101
    assert ext_answer(answer) == response
    assert (params is None) == (response is None)
    assert ws_handshake(head)[2] is None  # compression refused by the server: never negotiated


def test_deflate_params():
    head = upgrade(b"Sec-WebSocket-Extensions: " + (PMD + CMWB + SMWB + "=9").encode())
    assert ws_handshake(head, "", {"client_max_window_bits": 12})[2] == {
        "server_no_context_takeover": False, "client_no_context_takeover": False,
        "server_max_window_bits": 9, "client_max_window_bits": 12}


# --- permessage-deflate --------------------------------------------------------------------

def deflate_params(client_bits=15, client_no_context=False, server_bits=15, server_no_context=False):
    return {"client_max_window_bits": client_bits, "client_no_context_takeover": client_no_context,
            "server_max_window_bits": server_bits, "server_no_context_takeover": server_no_context}


def client_messages(texts, bits=15, takeover=True):
    """Compressed text frames as a client's compressor makes them (tail stripped). zlib will
    not make a raw stream with an 8-bit window: the engine's compressor stands in for it."""
    if bits == 8:
        d = WsDeflater(8, not takeover)
        return b"".join(frame(TEXT, d.compress(t.encode()), rsv=RSV1) for t in texts)
    comp = zlib.compressobj(wbits=-bits)
    out = b""
    for t in texts:
        if not takeover:
            comp = zlib.compressobj(wbits=-bits)
        data = comp.compress(t.encode()) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        out += frame(TEXT, data[:-4], rsv=RSV1)
    return out


TEXTS = ["hello " * 50, "hello " * 50, "κόσμε " * 30, ""]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("room", [1, 7, 4096])
def test_inflate_with_context_takeover(mode, room):
    stream = client_messages(TEXTS)
    events, error_at, _ = run(stream, mode, deflate=deflate_params(), inflate_room=room)
    assert events == [("text", t) for t in TEXTS] and error_at is None


@pytest.mark.parametrize("mode", MODES)
def test_inflate_without_context_takeover(mode):
    stream = client_messages(TEXTS, takeover=False)
    events, _, _ = run(stream, mode, deflate=deflate_params(client_no_context=True))
    assert events == [("text", t) for t in TEXTS]


def test_no_context_takeover_really_resets_the_window():
    # The client breaks the agreement (reuses its window): the second message refers to data
    # the server has forgotten, and cannot inflate.
    stream = client_messages(TEXTS[:2], takeover=True)
    events, _, _ = run(stream, deflate=deflate_params(client_no_context=True))
    assert strip(events) == [("text", TEXTS[0])] + E1002


@pytest.mark.parametrize("bits", [8, 9, 12, 15])
def test_inflate_window_bits(bits):
    texts = [os.urandom(3000).hex()[:5000] * 2, "abc" * 2000]
    events, _, _ = run(client_messages(texts, bits=bits), "random", deflate=deflate_params(client_bits=bits))
    assert events == [("text", t) for t in texts]


def test_fragmented_compressed_message():
    comp = zlib.compressobj(wbits=-15)
    data = (comp.compress(b"fragmented " * 100) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]
    third = len(data) // 3
    stream = (frame(TEXT, data[:third], fin=False, rsv=RSV1) + frame(PING, b"between") +
              frame(CONT, data[third:2 * third], fin=False) + frame(CONT, data[2 * third:]))
    for mode in MODES:
        events, _, _ = run(stream, mode, deflate=deflate_params())
        assert events == [("ping", b"between"), ("text", "fragmented " * 100)]


def compressed(data):
    comp = zlib.compressobj(wbits=-15)
    return (comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize("name,stream,code", [
    ("rsv1 on a continuation", frame(TEXT, b"x", fin=False, rsv=RSV1) + frame(CONT, b"y", rsv=RSV1), 1002),
    ("rsv1 on a ping", frame(PING, b"x", rsv=RSV1), 1002),
    ("not deflate data", frame(BINARY, b"\xff\xff\xff\xff", rsv=RSV1), 1002),
    ("inflates to invalid utf-8", frame(TEXT, compressed(b"ok\xff"), rsv=RSV1), 1007),
    ("inflates to a cut character", frame(TEXT, compressed(EURO[:2]), rsv=RSV1), 1007),
    ("inflates over the limit", frame(TEXT, compressed(b"a" * 2000), rsv=RSV1), 1009),
])
def test_compressed_errors(name, stream, code):
    events, _, _ = run(stream, deflate=deflate_params(), max_size=1000)
    assert strip(events) == [("error", code)]


@pytest.mark.parametrize("mode", MODES)
def test_compressed_message_ending_with_a_final_block(mode):
    # RFC 7692 7.2.3.4: a sender may end a message with BFINAL set; what the receiver appends
    # after it is ignored and the next message starts a new stream.
    texts = ["final " * 30, "next " * 30, "last"]
    stream = b""
    for t in texts:
        comp = zlib.compressobj(wbits=-15)
        data = comp.compress(t.encode()) + comp.flush(zlib.Z_FINISH)
        third = len(data) // 3
        stream += frame(TEXT, data[:third], fin=False, rsv=RSV1) + frame(CONT, data[third:])
    events, error_at, _ = run(stream, mode, deflate=deflate_params(), inflate_room=5)
    assert events == [("text", t) for t in texts] and error_at is None


def test_uncompressed_message_beside_compressed_ones():
    stream = client_messages(["a" * 100]) + frame(TEXT, b"plain") + client_messages(["b" * 100])
    events, _, _ = run(stream, deflate=deflate_params())
    assert events == [("text", "a" * 100), ("text", "plain"), ("text", "b" * 100)]


def test_decompression_bomb_stopped_by_max_size():
    # 64 MiB of zeros compress to about 64 KiB; with a 1 MiB limit the inflater must stop after
    # at most 1 MiB + one step of output, holding only zlib's own state (window + ~7 KiB).
    comp = zlib.compressobj(wbits=-15)
    bomb = b"".join(comp.compress(b"\0" * (1 << 20)) for _ in range(64)) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 128 * 1024
    p = WsParser(max_size=1 << 20, deflate=deflate_params(), inflate_room=16384)
    events = p.feed(frame(BINARY, bomb[:-4], rsv=RSV1))
    assert strip(events) == E1009
    now, peak = p.inflate_memory
    assert peak <= (1 << 15) + 16 * 1024
    # A bomb split over fragments is stopped the same way, at the fragment that overflows.
    third = len(bomb) // 3
    p = WsParser(max_size=1 << 20, deflate=deflate_params())
    events = p.feed(frame(BINARY, bomb[:third], fin=False, rsv=RSV1))
    assert strip(events) == E1009


def test_inflater_allocates_only_when_used():
    p = WsParser(deflate=deflate_params(client_bits=10))
    assert p.feed(frame(TEXT, b"plain")) == [("text", "plain")]
    assert p.inflate_memory == (0, 0)
    assert p.feed(client_messages(["x" * 10], bits=10)) == [("text", "x" * 10)]
    now, peak = p.inflate_memory
    assert (1 << 10) <= now <= (1 << 10) + 16 * 1024


@pytest.mark.parametrize("bits", [8, 9, 10, 12, 15])
@pytest.mark.parametrize("takeover", [True, False])
def test_deflater_round_trip(bits, takeover):
    d = WsDeflater(bits, not takeover)
    # An empty message right after another is where zlib has nothing to flush.
    messages = [b"repeat " * 200, b"repeat " * 200, os.urandom(5000), b"", b"", b"after empty", b""]
    decomp = zlib.decompressobj(wbits=-max(bits, 9))
    sizes = []
    for m in messages:
        payload = d.compress(m)
        sizes.append(len(payload))
        if not takeover:
            decomp = zlib.decompressobj(wbits=-max(bits, 9))  # each message stands alone
        assert decomp.decompress(payload + TAIL) == m
    if takeover and bits > 8:
        assert sizes[1] < sizes[0]  # the second message refers to the first
    # Through the engine's own inflater, as a client would read it.
    d = WsDeflater(bits, not takeover)
    stream = b"".join(frame(BINARY, d.compress(m), rsv=RSV1, mask=None) for m in messages)
    events, _, _ = run(stream, "random", from_server=True,
                       deflate=deflate_params(server_bits=bits, server_no_context=not takeover))
    assert events == [("binary", m) for m in messages]


@pytest.mark.parametrize("bits,mem_level", [(15, 8), (12, 5), (9, 1)])
def test_deflater_memory(bits, mem_level):
    # zlib's documented deflate memory: 2^(windowBits+2) + 2^(memLevel+9) plus its state.
    d = WsDeflater(bits, False, 6, mem_level)
    assert d.memory == (0, 0)
    d.compress(b"x" * 1000)
    now, peak = d.memory
    base = (1 << (bits + 2)) + (1 << (mem_level + 9))
    assert base <= now <= base + 16 * 1024
