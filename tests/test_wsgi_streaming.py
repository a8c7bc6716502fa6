"""WSGI answers longer than the adapter buffers are streamed: iterables as they come
(chunked, or with the declared length), real files through wsgi.file_wrapper with sendfile."""

import http.client

from helpers import running_server

from fastloop.wsgi import WSGIApp

PIECE = b"s" * 65536


def make_app(path, closed):
    def app(environ, start_response):
        route = environ["PATH_INFO"]
        if route == "/gen":
            start_response("200 OK", [("Content-Type", "text/plain")])

            def pieces():
                try:
                    for _ in range(80):  # 5 MiB
                        yield PIECE
                finally:
                    closed.append("gen")
            return pieces()
        if route == "/sized":
            start_response("200 OK", [("Content-Length", str(len(PIECE) * 3))])
            return iter([PIECE, PIECE, PIECE])
        if route == "/file":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return environ["wsgi.file_wrapper"](open(path, "rb"))
        start_response("404 Not Found", [])
        return [b""]

    return app


def test_long_answers_stream_and_files_use_their_descriptor(tmp_path):
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 4096  # 1 MiB
    path.write_bytes(data)
    closed = []
    with running_server(WSGIApp(make_app(path, closed))) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/gen")
        r = conn.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked" and r.getheader("Content-Length") is None
        assert r.read() == PIECE * 80
        assert closed == ["gen"]  # PEP 3333: close() once the answer is sent
        conn.request("GET", "/sized")
        r = conn.getresponse()
        assert r.getheader("Content-Length") == str(len(PIECE) * 3) and r.read() == PIECE * 3
        conn.request("GET", "/file")
        r = conn.getresponse()
        assert r.getheader("Content-Length") == str(len(data)) and r.read() == data
        conn.close()
