"""Streaming request bodies: a streaming route's handler reads the body as it arrives, with
bounded memory, Content-Length or chunked; what it leaves unread closes the connection."""

import socket
import time

from helpers import running_server, wait_until

import fastloop

H = b"Host: t\r\n"


def stream_app(record):
    app = fastloop.App()

    @app.route("/up", methods=("POST", "PUT"))
    def upload(request):
        sizes = [len(piece) for piece in request.stream(32768)]
        record.append(sizes)
        return f"{sum(sizes)} in {len(sizes)}"

    @app.route("/skip", methods=("POST",))
    def skip(request):
        return "not reading it"

    @app.route("/all", methods=("POST",))
    def whole(request):
        return request.body

    app.static("/", b"Hello")
    app._stream_paths = ["/up", "/skip", "/all"]
    return app


def read_one(f):
    status = f.readline()
    headers = {}
    while (line := f.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return int(status.split()[1]), headers, f.read(int(headers["content-length"]))


def test_a_large_body_streams_in_pieces_while_it_arrives():
    record = []
    size = 4 << 20
    with running_server(stream_app(record)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % size)
            for _ in range(64):
                s.sendall(b"u" * (size // 64))
                time.sleep(0.002)
            f = s.makefile("rb")
            status, headers, body = read_one(f)
            assert status == 200 and body == f"{size} in {len(record[0])}".encode()
            s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")  # keep-alive goes on
            assert read_one(f)[2] == b"Hello"
    assert len(record[0]) > 16 and max(record[0]) <= 32768  # pieces, not one buffer


def test_chunked_body_streams_and_expect_continue_is_sent_when_reading_starts():
    record = []
    with running_server(stream_app(record)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"PUT /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            f = s.makefile("rb")
            assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
            for i in range(20):
                s.sendall(b"1000\r\n" + bytes([65 + i]) * 4096 + b"\r\n")
            s.sendall(b"0\r\nX-Trailer: 1\r\n\r\n")
            status, _, body = read_one(f)
    assert status == 200 and body.startswith(b"81920 in ")


def test_unread_body_closes_the_connection_after_the_answer():
    with running_server(stream_app([])) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /skip HTTP/1.1\r\n" + H + b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000)
            f = s.makefile("rb")
            status, headers, body = read_one(f)
            assert (status, headers["connection"], body) == (200, "close", b"not reading it")
            s.sendall(b"x" * 5000)  # the rest is swallowed until the client goes
            s.shutdown(socket.SHUT_WR)
            assert f.read() == b""
        assert wait_until(lambda: srv.stats()["open"] == 0)


def test_body_property_reads_a_streaming_body_whole_and_errors_map_to_statuses():
    with running_server(stream_app([]), limits={"body_bytes": 10000}) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /all HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello")
            f = s.makefile("rb")
            assert read_one(f)[2] == b"hello"
            s.sendall(b"POST /all HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhelloXX")
            status, headers, _ = read_one(f)
            assert status == 400 and headers["connection"] == "close"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /all HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                      + b"2000\r\n" + b"y" * 8192 + b"\r\n" + b"2000\r\n")
            assert read_one(s.makefile("rb"))[0] == 413


def test_vanished_and_stalled_uploads_end_and_the_worker_goes_on():
    with running_server(stream_app([]), timeouts={"body": 0.5}) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n" + b"z" * 100)
            time.sleep(0.1)  # then it vanishes mid-body
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as stalled:
            stalled.sendall(b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n" + b"z" * 100)
            time.sleep(1.0)  # longer than the body timeout
            status, headers, _ = read_one(stalled.makefile("rb"))
            assert status == 408 and headers["connection"] == "close"  # the body timed out
        assert srv.stats()["timeouts"].get("body") == 1
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as ok:
            ok.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
            assert read_one(ok.makefile("rb"))[2] == b"Hello"
