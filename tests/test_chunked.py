"""The chunked body decoder (RFC 9112 7.1), one line per named case, fed whole, one byte at a
time and in random splits; then chunked uploads over real sockets."""

import random
import socket

import pytest
from fastloop._core import MAX_BODY_BYTES, ChunkedDecoder
from helpers import raw_request, running_server

import fastloop

CASES = [
    # name, input, expected: (body, raw length) or a status
    ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", (b"hello", 15)),
    ("two chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", (b"hello world", 26)),
    ("hex upper and lower", b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
     (b"0123456789abcdefghij", 35)),
    ("leading zeros", b"0005\r\nhello\r\n000\r\n\r\n", (b"hello", 20)),
    ("extension", b"5;name=value\r\nhello\r\n0;last\r\n\r\n", (b"hello", 31)),
    ("extension with ows", b"5 ; a=\"b c\"\r\nhello\r\n0\r\n\r\n", (b"hello", 25)),
    ("trailers dropped", b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", (b"hello", 31)),
    ("empty body", b"0\r\n\r\n", (b"", 5)),
    ("stops at the end", b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1", (b"x", 11)),
    ("incomplete size", b"5", None),
    ("incomplete data", b"5\r\nhel", None),
    ("incomplete trailers", b"5\r\nhello\r\n0\r\nX: 1\r\n", None),
    ("no digits", b"\r\nhello\r\n0\r\n\r\n", 400),
    ("bad digit", b"5g\r\nhello\r\n0\r\n\r\n", 400),
    ("negative", b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("size beyond any limit", b"1000000000000000\r\n", 413),  # 2^60: parsed, too large
    ("bare LF after size", b"5\nhello\r\n0\r\n\r\n", 400),
    ("data longer than size", b"5\r\nhello!\r\n0\r\n\r\n", 400),
    ("missing CRLF after data", b"5\r\nhelloXX0\r\n\r\n", 400),
    ("control in extension", b"5;a\x01\r\nhello\r\n0\r\n\r\n", 400),
    ("garbage after size", b"5 x\r\nhello\r\n0\r\n\r\n", 400),
    ("NUL in trailer", b"0\r\nX: a\x00\r\n\r\n", 400),
    ("line too long", b"5;" + b"e" * 5000, 400),
    ("too large", b"ffffff\r\n", 413),
    # issue 10, section 4: the chunk-size line's grammar (RFC 9112 7.1, 7.1.1)
    ("60 leading zeros", b"0" * 60 + b"5\r\nhello\r\n0\r\n\r\n", (b"hello", 75)),
    ("leading zeros on the last chunk", b"5\r\nhello\r\n" + b"0" * 60 + b"\r\n\r\n", (b"hello", 74)),
    ("space before CRLF", b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("tab before CRLF", b"5\r\nhello\r\n0\t\r\n\r\n", 400),
    ("space after an extension", b"5;a=b \r\nhello\r\n0\r\n\r\n", 400),
    ("semicolon without a name", b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("semicolon and space without a name", b"5; \r\nhello\r\n0\r\n\r\n", 400),
    ("equals without a name", b"5;=x\r\nhello\r\n0\r\n\r\n", 400),
    ("equals without a value", b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("unterminated quoted string", b'5;a="b\r\nhello\r\n0\r\n\r\n', 400),
    ("quoted string ending in a backslash", b'5;a="b\\\r\nhello\r\n0\r\n\r\n', 400),
    ("two extensions with ows", b'5 ;a ; b = "x\\"y" ;c=d\r\nhello\r\n0\r\n\r\n', (b"hello", 36)),
    ("extension on the last chunk", b"5\r\nhello\r\n0;x\r\n\r\n", (b"hello", 17)),
    ("chunk size 2^64-1", b"ffffffffffffffff\r\n", 413),
    ("chunk size 2^64+5", b"10000000000000005\r\nhello\r\n0\r\n\r\n", 413),  # not 5
]


def run(data, pieces):
    decoder = ChunkedDecoder(1 << 20)
    result = None
    for piece in pieces:
        result = decoder.feed(piece)
        if result is not None:
            return result
    return result


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_whole_bytewise_and_split(name, data, expected):
    assert run(data, [data]) == expected
    assert run(data, [data[i:i + 1] for i in range(len(data))]) == expected
    rng = random.Random(name)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 4)))
        assert run(data, [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]) == expected


# Chunk sizes at the 32-bit boundaries, against a body limit above them: the size must stay
# whole, so what follows its line is all chunk data, never the end of the body (smuggling).
BIG_SIZES = [2**32 - 1, 2**32, 2**32 + 1, 2**32 + 5]


@pytest.mark.parametrize("size", BIG_SIZES, ids=[hex(s) for s in BIG_SIZES])
def test_chunk_sizes_above_4_gib_are_not_cut(size):
    data = b"%x\r\nhello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n" % size
    for pieces in ([data], [data[i:i + 1] for i in range(len(data))]):
        decoder = ChunkedDecoder(MAX_BODY_BYTES)
        assert all(decoder.feed(p) is None for p in pieces)  # still inside the one chunk
    assert ChunkedDecoder(size - 1).feed(data) == 413
    assert ChunkedDecoder(size).feed(data) is None


@pytest.mark.parametrize("max_body", [-1, MAX_BODY_BYTES + 1])
def test_decoder_limit_is_bounded(max_body):
    with pytest.raises(ValueError):
        ChunkedDecoder(max_body)


def echo_app():
    app = fastloop.App()
    app.static("/static", b"static")

    @app.route("/echo", methods=("POST",))
    def echo(request):
        return request.body

    return app


def test_chunked_upload_over_a_socket_then_the_next_request():
    body = bytes(random.Random(1).getrandbits(8) for _ in range(100_000))
    chunks = b"".join(b"%x\r\n" % len(body[i:i + 7000]) + body[i:i + 7000] + b"\r\n"
                      for i in range(0, len(body), 7000))
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
           + b"0\r\nTrailer: x\r\n\r\nGET /static HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with running_server(echo_app()) as srv:
        data = raw_request(srv.port, req)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 100000" in first
    assert rest[:100_000] == body
    assert rest[100_000:].startswith(b"HTTP/1.1 200 ") and rest.endswith(b"static")


def test_bad_chunk_is_rejected_and_nothing_after_it_is_parsed():
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhelloXX0\r\n\r\nGET /static HTTP/1.1\r\nHost: t\r\n\r\n")
    with running_server(echo_app()) as srv:
        data = raw_request(srv.port, req)
        assert srv.stats()["rejected"] == {"400": 1}
    assert data.startswith(b"HTTP/1.1 400 ") and b"static" not in data


def test_chunked_body_over_the_limit_gets_413():
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 3)
    with running_server(echo_app(), limits={"body_bytes": 2000}) as srv:
        data = raw_request(srv.port, req)
    assert data.startswith(b"HTTP/1.1 413 ")


def test_expect_continue_on_a_static_route_answers_at_once():
    with running_server(echo_app()) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /static HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 1000\r\n\r\n")
            data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in data
    assert b"Connection: close" in data and data.endswith(b"static")
