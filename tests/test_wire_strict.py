"""Every byte on the wire exactly right (issue 10, the request side), over real sockets: no
smuggling past a body limit above 4 GiB, strict targets and Host, and no wait for a client
that does not speak HTTP/1 at all. The parser's own tables are tests/test_http_parse.py and
tests/test_chunked.py; these check that a connection acts on what the parser decides."""

import re
import socket

import pytest
from fastloop._core import MAX_BODY_BYTES
from helpers import raw_request, running_server

import fastloop

H = b"Host: t\r\n"
ABOVE_4_GIB = 10_000_000_000  # the --limit-request-body of the issue
SMUGGLE = (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4294967306\r\n\r\n0123456789"
           b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")


def app_with_routes(record=None):
    app = fastloop.App()

    @app.route("/upload", methods=("POST",))
    def upload(request):
        return b"upload %d" % len(request.body)

    @app.route("/stream", methods=("POST",))
    def stream(request):
        got = 0
        try:
            for piece in request.stream():
                got += len(piece)
        except ConnectionError:
            pass  # the client shut its side: the body never came whole
        if record is not None:
            record.append(got)
        return b"stream %d" % got

    @app.route("/admin")
    def admin(request):
        return b"ADMIN"

    @app.route("/host")
    def host(request):
        return request.host if request.host is not None else "none"

    app.static("/", b"Hello")
    app._stream_paths = ["/stream"]
    return app


def answers(data):
    """The status codes of the answers in data, in order (no body here holds a status line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


# ---- section 1: lengths above 4 GiB ------------------------------------------------------

def test_the_smuggling_payload_of_the_issue_gets_one_answer():
    with running_server(app_with_routes(), limits={"body_bytes": ABOVE_4_GIB}) as srv:
        data = raw_request(srv.port, SMUGGLE, timeout=5)
        stats = srv.stats()
    # Buffered, 4294967306 bytes cannot fit a read buffer: 413 and close. It was cut to 10.
    assert answers(data) == [413] and b"ADMIN" not in data and b"upload" not in data
    assert stats["rejected"] == {"413": 1}


def test_the_smuggling_payload_on_a_streaming_route_is_all_body():
    record = []
    payload = SMUGGLE.replace(b"/upload", b"/stream")
    with running_server(app_with_routes(record), limits={"body_bytes": ABOVE_4_GIB}) as srv:
        data = raw_request(srv.port, payload, timeout=5, shut_write=True)
    # The handler saw every byte after the head as body, then the end of the stream.
    assert record == [len(payload) - payload.index(b"\r\n\r\n") - 4]
    assert b"ADMIN" not in data and len(answers(data)) <= 1


@pytest.mark.parametrize("length", [2**32 - 1, 2**32, 2**32 + 1, 2**32 + 10])
def test_content_lengths_at_the_32_bit_boundaries_are_never_cut(length):
    body = b"0123456789"
    req = (b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % length + body
           + b"GET /admin HTTP/1.1\r\n" + H + b"\r\n")
    with running_server(app_with_routes(), limits={"body_bytes": MAX_BODY_BYTES}) as srv:
        data = raw_request(srv.port, req, timeout=5)
    assert answers(data) == [413] and b"ADMIN" not in data


def test_content_length_2_pow_64_minus_1_is_413():
    req = (b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % (2**64 - 1)
           + b"GET /admin HTTP/1.1\r\n" + H + b"\r\n")
    with running_server(app_with_routes(), limits={"body_bytes": MAX_BODY_BYTES}) as srv:
        data = raw_request(srv.port, req, timeout=5)
    assert answers(data) == [413] and b"ADMIN" not in data


@pytest.mark.parametrize("size", [2**32 - 1, 2**32, 2**32 + 1])
def test_a_chunk_above_4_gib_on_a_streaming_route_is_all_body(size):
    record = []
    req = (b"POST /stream HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % size
           + b"hello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n" + H + b"\r\n")
    with running_server(app_with_routes(record), limits={"body_bytes": MAX_BODY_BYTES}) as srv:
        data = raw_request(srv.port, req, timeout=5, shut_write=True)
    assert record == [len(req) - req.index(b"%x\r\n" % size) - len(b"%x\r\n" % size)]
    assert b"ADMIN" not in data and len(answers(data)) <= 1


@pytest.mark.parametrize("body", [2**32 - 1, 2**32, 2**32 + 1])
def test_body_limits_around_4_gib_are_taken_exactly(body):
    req = b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % (body + 1)
    with running_server(app_with_routes(), limits={"body_bytes": body}) as srv:
        assert answers(raw_request(srv.port, req, timeout=5)) == [413]


@pytest.mark.parametrize("body", [2**64 - 1, MAX_BODY_BYTES + 1, -1])
def test_a_body_limit_past_its_maximum_is_refused(body):
    with pytest.raises(ValueError, match="body_bytes"):
        with running_server(app_with_routes(), limits={"body_bytes": body}):
            pass


# ---- section 3: Host and request targets ------------------------------------------------

@pytest.mark.parametrize("value", [b"a b", b"x/y", b"user@x", b"x:8a", b"x:65536", b"[::1", b"caf\xc3\xa9"])
def test_an_invalid_host_gets_400_and_nothing_after_it_is_parsed(value):
    req = b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\nGET /admin HTTP/1.1\r\n" + H + b"\r\n"
    with running_server(app_with_routes()) as srv:
        data = raw_request(srv.port, req)
    assert answers(data) == [400] and b"ADMIN" not in data


@pytest.mark.parametrize("target", [b"http:///x", b"http://[bad/x", b"s://]ufd/:", b"http://u@a/x"])
def test_an_invalid_absolute_form_authority_gets_400(target):
    with running_server(app_with_routes()) as srv:
        data = raw_request(srv.port, b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert answers(data) == [400]


@pytest.mark.parametrize("target", [b"/a#b", b'/a"b', b"/a|b", b"/a\\b", b"/a^b", b"/a`b", b"/a{b",
                                    b"/a}b", b"/a<b", b"/a>b", b"/caf\xc3\xa9", b"/a%zz", b"/a%"])
def test_an_invalid_origin_form_target_gets_400(target):
    with running_server(app_with_routes()) as srv:
        data = raw_request(srv.port, b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert answers(data) == [400]


def test_lenient_targets_accept_raw_utf8_paths_only():
    utf8 = b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    with running_server(app_with_routes(), limits={"lenient_targets": True}) as srv:
        assert answers(raw_request(srv.port, utf8)) == [404]  # parsed, then routed: no such path
        assert answers(raw_request(srv.port, b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n")) == [400]


def test_request_host_is_the_absolute_form_authority_else_the_host_header():
    with running_server(app_with_routes()) as srv:
        absolute = raw_request(srv.port, b"GET http://a.example:8080/host HTTP/1.1\r\nHost: other\r\n"
                                         b"Connection: close\r\n\r\n")
        origin = raw_request(srv.port, b"GET /host HTTP/1.1\r\nHost: [::1]:81\r\nConnection: close\r\n\r\n")
        http10 = raw_request(srv.port, b"GET /host HTTP/1.0\r\n\r\n")
    assert absolute.endswith(b"\r\n\r\na.example:8080")
    assert origin.endswith(b"\r\n\r\n[::1]:81")
    assert http10.endswith(b"\r\n\r\nnone")


# ---- section 4: framing details ----------------------------------------------------------

@pytest.mark.parametrize("coding", [b"chunked,", b", chunked"])
def test_empty_list_elements_in_transfer_encoding_are_ignored(coding):
    req = (b"POST /upload HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + coding + b"\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    with running_server(app_with_routes()) as srv:
        data = raw_request(srv.port, req)
    assert answers(data) == [200, 200] and b"upload 5" in data and data.endswith(b"Hello")


def test_a_target_of_7900_bytes_and_100_fields_plus_host_are_served():
    long_target = b"GET /?" + b"q" * 7900 + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    many = (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(99))
            + b"Connection: close\r\n\r\n")
    with running_server(app_with_routes()) as srv:
        assert raw_request(srv.port, long_target).endswith(b"Hello")
        assert raw_request(srv.port, many).endswith(b"Hello")


TLS_HELLO = bytes.fromhex("16030100f4010000f00303") + bytes(32) + bytes.fromhex("20") + bytes(32)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


@pytest.mark.parametrize("opening", [TLS_HELLO, H2_PREFACE, H2_PREFACE[:16]], ids=["tls", "h2", "h2-line"])
def test_a_client_that_does_not_speak_http1_is_answered_at_once(opening):
    # The header timeout is long: recv() gets the answer and the close before its own 5 s
    # timeout (which raises) only if they come at once.
    with running_server(app_with_routes(), timeouts={"header": 60}) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(opening)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        stats = srv.stats()
    assert answers(data) == [400] and b"Connection: close" in data
    assert stats["rejected"] == {"400": 1} and not stats["timeouts"]
