"""Answer framing is the server's, never the handler's (issue: every byte on the wire exactly
right). Each case sends two pipelined requests, the case and then GET /next, and reads the
wire with the strict reader in wire.py: the case's answer must be one well-framed answer
followed by /next's intact answer, or be cut and the connection closed, never anything in
between (two lengths, a half head, a short body on a live connection)."""

from __future__ import annotations


import pytest
from helpers import running_server
from wire import Malformed, Truncated, exchange, read_answer

import fastloop


def two_answers(port: int, request: bytes, head: bool = False):
    data, closed = exchange(port, request, head=head)
    got = read_answer(data, head_request=head, eof=closed)
    assert got is not None, data
    first, rest = got
    nxt = read_answer(rest, eof=closed)
    assert nxt is not None and nxt[0].body == b"next" and not nxt[1], (data, closed)
    return first


def cut_answer(port: int, request: bytes) -> bytes:
    """The case's answer must be cut: the connection closes and /next is never answered."""
    data, closed = exchange(port, request)
    assert closed, data
    try:
        got = read_answer(data, eof=True)
    except Truncated:
        return data
    # A complete first answer is fine only if nothing follows it (the cut came at its end).
    assert got is not None and got[1] == b"", data
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ten = tmp_path_factory.mktemp("files") / "ten.bin"
    ten.write_bytes(b"0123456789")
    app = fastloop.App()
    app.static("/next", b"next")
    cases = {
        "cl-header": lambda: fastloop.Response(b"abc", headers={"Content-Length": "3"}),
        "cl-header-zeros": lambda: fastloop.Response(b"abc", headers=[("Content-Length", "003")]),
        "cl-header-wrong": lambda: fastloop.Response(b"abc", headers={"Content-Length": "5"}),
        "cl-header-bad": lambda: fastloop.Response(b"abc", headers={"Content-Length": "3, 3"}),
        "cl-two-values": lambda: fastloop.Response(b"abc", headers=[("Content-Length", "3"),
                                                                    ("Content-Length", "4")]),
        "cl-header-vs-arg": lambda: fastloop.Response(iter([b"abc"]), content_length=3,
                                                      headers={"Content-Length": "4"}),
        "cl-header-iter": lambda: fastloop.Response(iter([b"ab", b"c"]), headers={"Content-Length": "3"}),
        "te-header": lambda: fastloop.Response(b"abc", headers={"Transfer-Encoding": "chunked"}),
        "te-header-iter": lambda: fastloop.Response(iter([b"abc"]), headers={"Transfer-Encoding": "gzip"}),
        "conn-keep-alive": lambda: fastloop.Response(b"abc", headers={"Connection": "keep-alive"}),
        "conn-close": lambda: fastloop.Response(b"abc", headers={"Connection": "Upgrade, Close"}),
        "server-date": lambda: fastloop.Response(b"abc", headers={"Server": "mine", "Date": "x"}),
        "len-str": lambda: fastloop.Response(b"abc", content_length="3"),
        "len-negative": lambda: fastloop.Response(iter([b"abc"]), content_length=-1),
        "len-bool": lambda: fastloop.Response(b"a", content_length=True),
        "len-float": lambda: fastloop.Response(b"abc", content_length=3.0),
        "file-short": lambda: fastloop.Response(open(ten, "rb"), content_length=20),
        "file-longer": lambda: fastloop.Response(open(ten, "rb"), content_length=4),
        "iter-int": lambda: fastloop.Response(iter([b"ab", 5, b"cd"])),
        "iter-none": lambda: fastloop.Response(iter([b"ab", None])),
        "iter-mixed": lambda: fastloop.Response(iter([b"a", "é", bytearray(b"b"), memoryview(b"c")])),
        "nul-value": lambda: fastloop.Response(b"x", headers={"X-A": "a\x00b"}),
        "ctl-value": lambda: fastloop.Response(b"x", headers={"X-A": "a\x1bb"}),
        "del-value": lambda: fastloop.Response(b"x", headers={"X-A": "a\x7fb"}),
        "tab-value": lambda: fastloop.Response(b"x", headers={"X-A": "a\tb"}),
        "nul-name": lambda: fastloop.Response(b"x", headers={"X-\x00A": "1"}),
        "space-name": lambda: fastloop.Response(b"x", headers={"X A": "1"}),
        "colon-name": lambda: fastloop.Response(b"x", headers={"X:A": "1"}),
        "nul-reason": lambda: fastloop.Response(b"x", reason="O\x00K"),
        "nul-ctype": lambda: fastloop.Response(b"x", content_type="text/plain\x00"),
        "interim-status": lambda: fastloop.Response(b"x", status=103),
        "status-304": lambda: fastloop.Response(b"", status=304),
        "status-204": lambda: fastloop.Response(b"", status=204, headers={"Content-Length": "0"}),
    }

    @app.route("/case/{name}", methods=("GET", "HEAD"))
    def case(request, name):
        return cases[name]()

    with running_server(app) as srv:
        yield srv


def get(name: str, method: str = "GET") -> bytes:
    return f"{method} /case/{name} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


@pytest.mark.parametrize("name, length", [("cl-header", b"3"), ("cl-header-zeros", b"3"),
                                          ("te-header", b"3"), ("conn-keep-alive", b"3"),
                                          ("server-date", b"3")])
def test_framing_fields_of_a_handler_are_the_cores(server, name, length):
    a = two_answers(server.port, get(name))
    assert (a.status, a.body, a.header("content-length")) == (200, b"abc", length)
    assert a.count("content-length") == 1 and a.count("transfer-encoding") == 0
    assert a.count("connection") == 0 and a.count("server") == 1 and a.count("date") == 1


def test_server_and_date_of_a_handler_replace_the_cores(server):
    a = two_answers(server.port, get("server-date"))
    assert a.header("server") == b"mine" and a.header("date") == b"x"


def test_a_content_length_field_announces_an_iterable(server):
    a = two_answers(server.port, get("cl-header-iter"))
    assert (a.header("content-length"), a.count("transfer-encoding"), a.body) == (b"3", 0, b"abc")
    a = two_answers(server.port, get("te-header-iter"))
    assert (a.header("transfer-encoding"), a.count("content-length"), a.body) == (b"chunked", 0, b"abc")


def test_connection_close_from_a_handler_closes_after_its_answer(server):
    data, closed = exchange(server.port, get("conn-close"))
    a, rest = read_answer(data, eof=closed)
    assert closed and rest == b"" and a.body == b"abc"
    assert a.count("connection") == 1 and a.header("connection") == b"close"


@pytest.mark.parametrize("name", ["cl-header-wrong", "cl-header-bad", "cl-two-values",
                                  "cl-header-vs-arg", "len-str", "len-negative", "len-bool",
                                  "len-float", "nul-value", "ctl-value", "del-value",
                                  "nul-name", "space-name", "colon-name", "nul-reason",
                                  "nul-ctype", "interim-status"])
def test_an_invalid_answer_becomes_a_clean_500_on_a_live_connection(server, name):
    a = two_answers(server.port, get(name))
    assert a.status == 500 and a.body == b"Internal Server Error"
    assert b"\x00" not in a.body and a.count("content-length") == 1


def test_an_invalid_length_on_a_head_answer_is_a_500_too(server):
    a = two_answers(server.port, get("len-negative", "HEAD"), head=True)
    assert a.status == 500


def test_htab_in_a_value_is_allowed(server):
    assert two_answers(server.port, get("tab-value")).header("x-a") == b"a\tb"


def test_a_file_shorter_than_its_content_length_cuts_the_connection(server):
    data = cut_answer(server.port, get("file-short"))
    assert b"Content-Length: 20\r\n" in data and data.endswith(b"0123456789")


def test_a_file_longer_than_its_content_length_sends_that_much(server):
    a = two_answers(server.port, get("file-longer"))
    assert (a.header("content-length"), a.body) == (b"4", b"0123")


@pytest.mark.parametrize("name", ["iter-int", "iter-none"])
def test_an_iterable_that_yields_a_non_bytes_piece_is_cut(server, name):
    data = cut_answer(server.port, get(name))
    assert b"\x00" not in data.partition(b"\r\n\r\n")[2]


def test_an_iterable_may_yield_bytes_like_pieces_and_str(server):
    assert two_answers(server.port, get("iter-mixed")).body == "aébc".encode()


def test_304_and_204_carry_no_invented_length(server):
    a = two_answers(server.port, get("status-304"))
    assert a.status == 304 and a.count("content-length") == 0
    a = two_answers(server.port, get("status-204"))
    assert a.status == 204 and a.count("content-length") == 0


def test_http10_keep_alive_with_a_streamed_body_is_close_delimited_and_closed(server):
    req = b"GET /case/iter-mixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    data, closed = exchange(server.port, req)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and body == "aébc".encode()


def test_a_static_route_refuses_framing_headers():
    app = fastloop.App()
    for name in ("Content-Length", "transfer-encoding", "Connection"):
        with pytest.raises(ValueError):
            app.static("/x", b"x", headers={name: "1"})
    with pytest.raises(ValueError):
        app.static("/x", b"x", headers={"X-A": "a\x00"})


def test_the_reader_rejects_what_it_should():
    for bad in (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n"):
        with pytest.raises(Malformed):
            read_answer(bad)
