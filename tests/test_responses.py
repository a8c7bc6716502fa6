"""What handlers can answer: JSON, reason phrases, no Content-Type, files (sendfile) and
iterables streamed as they come; and the query string parsed for them."""

import http.client
import json
import socket

from helpers import raw_request, running_server

import fastloop

H = b"Host: t\r\n"


def make_app(tmp_path):
    app = fastloop.App()
    data = bytes(range(256)) * 8192  # 2 MiB
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    @app.route("/json")
    def as_json(request):
        return {"ok": True, "items": [1, 2, "é"]}

    @app.route("/reason")
    def reason(request):
        return fastloop.Response(b"fine", 200, reason="Very Fine", content_type="")

    @app.route("/file")
    def file(request):
        f = open(path, "rb")
        f.seek(int(request.query or 0))
        return fastloop.Response(f, content_type="application/x-blob")

    @app.route("/gen")
    def gen(request):
        n = int(request.query_args.get("n", "3"))
        return fastloop.Response((b"piece %d;" % i for i in range(n)), content_type="text/plain")

    @app.route("/sized")
    def sized(request):
        return fastloop.Response(iter([b"ab", "cd", bytearray(b"ef")]), content_length=6)

    @app.route("/broken")
    def broken(request):
        def pieces():
            yield b"a" * 100
            raise RuntimeError("the generator failed half way")
        return fastloop.Response(pieces())

    @app.route("/head-length")
    def head_length(request):
        return fastloop.Response(b"", content_length=1234)

    @app.route("/args")
    def args(request):
        return {"args": request.query_args, "items": request.query_items}

    return app, data


def test_json_reason_and_no_content_type(tmp_path):
    app, _ = make_app(tmp_path)
    with running_server(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/json")
        r = conn.getresponse()
        assert r.getheader("Content-Type") == "application/json"
        assert json.loads(r.read()) == {"ok": True, "items": [1, 2, "é"]}
        conn.request("GET", "/reason")
        r = conn.getresponse()
        assert ((r.status, r.reason, r.getheader("Content-Type"), r.read())
                == (200, "Very Fine", None, b"fine"))
        conn.request("GET", "/args?a=1&b=x%20y&a=2&empty=")
        assert json.loads(conn.getresponse().read()) == {
            "args": {"a": "1", "b": "x y", "empty": ""},
            "items": [["a", "1"], ["b", "x y"], ["a", "2"], ["empty", ""]]}


def test_a_file_is_sent_whole_from_its_position(tmp_path):
    app, data = make_app(tmp_path)
    with running_server(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        for offset in (0, 1000):
            conn.request("GET", f"/file?{offset}")
            r = conn.getresponse()
            assert r.getheader("Content-Length") == str(len(data) - offset)
            assert r.read() == data[offset:]
        conn.request("HEAD", "/file")
        r = conn.getresponse()
        assert r.getheader("Content-Length") == str(len(data)) and r.read() == b""
        conn.request("GET", "/json")  # the connection is still in step
        assert conn.getresponse().status == 200


def test_iterables_stream_chunked_or_sized_and_close_delimited_for_http10(tmp_path):
    app, _ = make_app(tmp_path)
    with running_server(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/gen?n=5000")
        r = conn.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked"
        assert r.read() == b"".join(b"piece %d;" % i for i in range(5000))
        conn.request("GET", "/sized")
        r = conn.getresponse()
        assert r.getheader("Content-Length") == "6" and r.read() == b"abcdef"
        data = raw_request(srv.port, b"GET /gen?n=3 HTTP/1.0\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head and b"Connection: close" in head
        assert body == b"piece 0;piece 1;piece 2;"


def test_a_body_that_fails_half_way_cuts_the_connection(tmp_path):
    app, _ = make_app(tmp_path)
    with running_server(app) as srv:
        data = raw_request(srv.port, b"GET /broken HTTP/1.1\r\n" + H + b"\r\n")
        assert data.startswith(b"HTTP/1.1 200 ") and not data.endswith(b"0\r\n\r\n")
        assert raw_request(srv.port, b"GET /json HTTP/1.1\r\n" + H
                           + b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_content_length_announced_for_head(tmp_path):
    app, _ = make_app(tmp_path)
    with running_server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"HEAD /head-length HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    assert b"Content-Length: 1234\r\n" in data and data.endswith(b"\r\n\r\n")


def test_header_injection_through_a_response_is_refused(tmp_path):
    app, _ = make_app(tmp_path)

    @app.route("/inject")
    def inject(request):
        which = request.query
        if which == "ctype":
            return fastloop.Response(b"x", content_type="text/plain\r\nX-Evil: 1")
        if which == "reason":
            return fastloop.Response(b"x", reason="OK\r\nX-Evil: 1")
        return fastloop.Response(b"x", headers=[("X-Ok", "1\r\nX-Evil: 1")])

    with running_server(app) as srv:
        for which in ("ctype", "reason", "header"):
            data = raw_request(srv.port, b"GET /inject?" + which.encode() + b" HTTP/1.1\r\n" + H
                               + b"Connection: close\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 500 ") and b"X-Evil" not in data, which
