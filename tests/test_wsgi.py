"""WSGI (PEP 3333) over real sockets: the environ, start_response with exc_info, write(),
close(), wsgi.file_wrapper, mounting, wsgiref.validate, and a real Flask application."""

import http.client
import io
import json
import socket
from wsgiref.validate import validator

import pytest
from helpers import raw_request, running_server, wait_until

import fastloop
from fastloop.wsgi import FileWrapper, WSGIApp

H = b"Host: example.org:8080\r\n"


def request(port, method="GET", path="/", body=None, headers=()):
    """(status, headers as a list, body) over http.client, one connection per call."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def environ_app(environ, start_response):
    """Answers the environ's text keys and a few wsgi.* facts as JSON."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    seen = {k: v for k, v in environ.items() if isinstance(v, str)}
    seen["body"] = body.decode("latin-1")
    seen["version"] = list(environ["wsgi.version"])
    seen["input_terminated"] = environ["wsgi.input_terminated"]
    data = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture(scope="module")
def environ_server():
    with running_server(WSGIApp(validator(environ_app))) as srv:
        yield srv


def environ_of(srv, raw):
    data = raw_request(srv.port, raw)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return json.loads(body)


def test_environ_follows_pep_3333(environ_server):
    env = environ_of(environ_server, b"POST /a%20b/c%C3%A9?x=1&y=%20 HTTP/1.1\r\n" + H +
                     b"Content-Type: text/plain\r\nContent-Length: 5\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
                     b"Cookie: a=1\r\nCookie: b=2\r\nX_Spoofed: 1\r\nConnection: close\r\n\r\nhello")
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a b/c\u00c3\u00a9"   # decoded bytes, carried as latin-1
    assert env["QUERY_STRING"] == "x=1&y=%20"          # left encoded
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.org", "8080")
    assert env["HTTP_HOST"] == "example.org:8080"
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "5")
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_MULTI"] == "1,2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SPOOFED" not in env   # underscores would alias X-Spoofed
    assert env["wsgi.url_scheme"] == "http" and env["version"] == [1, 0]
    assert env["body"] == "hello" and env["input_terminated"] is True


def test_chunked_body_reaches_the_app_with_its_length(environ_server):
    env = environ_of(environ_server, b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n")
    assert env["body"] == "abcdefg" and env["CONTENT_LENGTH"] == "7"
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h", "80")


def test_http10_without_host(environ_server):
    env = environ_of(environ_server, b"GET / HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0" and env["SERVER_NAME"] and env["SERVER_PORT"]
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


# ---- the response side -------------------------------------------------------------------

closed = []


def response_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/write":
        write = start_response("201 Created", [("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")])
        write(b"written ")
        return [b"then ", b"", b"iterated"]
    if path == "/generator":
        def gen():
            try:
                yield b"one "
                yield b"two"
            finally:
                closed.append("generator")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/closing":
        class Body:
            def __iter__(self):
                return iter([b"body"])

            def close(self):
                closed.append("closing")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()
    if path == "/error-before-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("inner")
        except ValueError:
            import sys
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    if path == "/error-after-body":
        import sys
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())  # re-raises
        return [b"never"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])  # no exc_info: an error
        return [b"never"]
    if path == "/raises":
        class Failing:
            def __iter__(self):
                yield b"x"
                raise RuntimeError("mid-body")

            def close(self):
                closed.append("failing")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Failing()
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"f" * 200_000), 8192)
    if path == "/headers":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4"),
                                  ("Connection", "close"), ("Transfer-Encoding", "chunked"),
                                  ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [b"abcdef"]  # longer than declared: cut to 4
    if path == "/no-start":
        return [b"x"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"nope"]


@pytest.fixture(scope="module")
def response_server():
    with running_server(WSGIApp(response_app)) as srv:
        yield srv


def test_write_and_iterable_are_joined_in_order(response_server):
    status, headers, body = request(response_server.port, path="/write")
    assert (status, body) == (201, b"written then iterated")
    assert [v for k, v in headers if k == "X-A"] == ["1", "2"]


@pytest.mark.parametrize("path,body,what", [("/generator", b"one two", "generator"),
                                            ("/closing", b"body", "closing")])
def test_iterables_are_closed(response_server, path, body, what):
    closed.clear()
    assert request(response_server.port, path=path)[::2] == (200, body)
    assert closed == [what]


def test_exc_info_before_the_body_replaces_the_answer(response_server):
    assert request(response_server.port, path="/error-before-body")[::2] == (503, b"sorry")


@pytest.mark.parametrize("path", ["/error-after-body", "/twice", "/no-start"])
def test_app_errors_answer_500_and_still_close(response_server, path):
    status, _, body = request(response_server.port, path=path)
    assert status == 500 and body == b"Internal Server Error"
    assert request(response_server.port, path="/write")[0] == 201  # the server lives on


def test_an_iterable_that_fails_after_its_first_block_is_cut_and_closed(response_server):
    # PEP 3333: the first block went out as it was yielded, so no 500 can follow it: the
    # answer is cut (the client sees it incomplete), close() is called, the server lives on.
    closed.clear()
    data = raw_request(response_server.port, b"GET /raises HTTP/1.1\r\nHost: t\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ") and b"1\r\nx\r\n" in data
    assert not data.endswith(b"0\r\n\r\n")
    assert wait_until(lambda: closed == ["failing"])
    assert request(response_server.port, path="/write")[0] == 201


def test_file_wrapper(response_server):
    status, _, body = request(response_server.port, path="/file")
    assert status == 200 and body == b"f" * 200_000


def test_hop_by_hop_headers_are_dropped_and_length_is_enforced(response_server):
    status, headers, body = request(response_server.port, path="/headers")
    names = [name.lower() for name, _ in headers]
    assert (status, body) == (200, b"abcd")
    assert "transfer-encoding" not in names and ("connection", "close") not in headers
    assert names.count("content-length") == 1 and ("Content-Length", "4") in headers
    assert names.count("set-cookie") == 2


def test_head_request_has_no_body(response_server):
    data = raw_request(response_server.port, b"HEAD /write HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 201 ") and data.endswith(b"\r\n\r\n")


def test_file_wrapper_iterates_in_blocks_and_closes():
    f = io.BytesIO(b"abcde")
    wrapper = FileWrapper(f, 2)
    assert list(wrapper) == [b"ab", b"cd", b"e"]
    wrapper.close()
    assert f.closed


# ---- mounting -------------------------------------------------------------------------------

def test_mount_wsgi_under_a_prefix_beside_routes():
    app = fastloop.App()

    @app.get("/legacy/native")
    def native(request):
        return "native"

    app.mount_wsgi("/legacy", validator(environ_app))
    with running_server(app) as srv:
        env = json.loads(request(srv.port, path="/legacy/a%2Fb?q=1")[2])
        assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == ("/legacy", "/a/b", "q=1")
        env = json.loads(request(srv.port, method="DELETE", path="/legacy")[2])
        assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["REQUEST_METHOD"]) == ("/legacy", "", "DELETE")
        assert request(srv.port, path="/legacy/native")[2] == b"native"
        assert request(srv.port, path="/legacyx")[0] == 404


def test_wsgi_app_routes_come_first():
    app = WSGIApp(response_app)
    app.static("/health", "ok")
    with running_server(app) as srv:
        assert request(srv.port, path="/health")[::2] == (200, b"ok")
        assert request(srv.port, path="/elsewhere")[::2] == (404, b"nope")


# ---- Flask ----------------------------------------------------------------------------------

def make_flask_app():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.secret_key = "test only"

    @app.route("/form", methods=["GET", "POST"])
    def form():
        if flask.request.method == "POST":
            flask.session["name"] = flask.request.form["name"]
            return flask.redirect(flask.url_for("hello"))
        return '<form method="post"><input name="name"></form>'

    @app.route("/hello")
    def hello():
        return f"hello {flask.session.get('name', 'nobody')}"

    @app.route("/stream")
    def stream():
        def generate():
            for i in range(5):
                yield f"part {i}\n"
        return flask.Response(flask.stream_with_context(generate()), mimetype="text/plain")

    @app.route("/json", methods=["POST"])
    def echo_json():
        return flask.jsonify(got=flask.request.get_json(), args=flask.request.args.to_dict())

    @app.route("/upload", methods=["POST"])
    def upload():
        f = flask.request.files["file"]
        return f"{f.filename} {len(f.read())}"

    return app


@pytest.fixture(scope="module")
def flask_server():
    with running_server(WSGIApp(make_flask_app())) as srv:
        yield srv


def test_flask_form_post_cookie_and_redirect(flask_server):
    port = flask_server.port
    status, headers, _ = request(port, "POST", "/form", body="name=Ada+L",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    headers = dict(headers)
    assert status == 302 and headers["Location"].endswith("/hello")
    cookie = headers["Set-Cookie"].split(";")[0]
    assert request(port, path="/hello", headers={"Cookie": cookie})[::2] == (200, b"hello Ada L")
    assert request(port, path="/hello")[2] == b"hello nobody"


def test_flask_streamed_response(flask_server):
    status, _, body = request(flask_server.port, path="/stream")
    assert status == 200 and body == b"".join(b"part %d\n" % i for i in range(5))


def test_flask_json_query_and_404(flask_server):
    status, _, body = request(flask_server.port, "POST", "/json?a=1&b=x%20y", body=b'{"k": [1, 2]}',
                              headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(body) == {"got": {"k": [1, 2]}, "args": {"a": "1", "b": "x y"}}
    assert request(flask_server.port, path="/missing")[0] == 404
    assert request(flask_server.port, "DELETE", "/hello")[0] == 405


def test_flask_multipart_upload(flask_server):
    boundary = "XyZ"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
               f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"\x00" * 70_000 + \
        f"\r\n--{boundary}--\r\n".encode()
    status, _, body = request(flask_server.port, "POST", "/upload", body=payload,
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (status, body) == (200, b"a.bin 70000")


def test_an_absolute_form_target_names_the_host_for_wsgi():
    seen = {}

    def app(environ, start_response):
        seen.update(host=environ.get("HTTP_HOST"), name=environ["SERVER_NAME"],
                    port=environ["SERVER_PORT"], path=environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with running_server(fastloop.wsgi.WSGIApp(app)) as srv:
        data = raw_request(srv.port, b"GET http://abs.example:8080/x?q HTTP/1.1\r\nHost: other.example\r\n"
                           b"Connection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert seen == {"host": "abs.example:8080", "name": "abs.example", "port": "8080", "path": "/x"}


def test_remote_addr_is_empty_over_a_unix_socket(tmp_path):
    seen = {}

    def app(environ, start_response):
        seen["addr"] = environ.get("REMOTE_ADDR")
        start_response("200 OK", [])
        return [b"ok"]

    path = str(tmp_path / "s.sock")
    with running_server(fastloop.wsgi.WSGIApp(app), uds=path):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert seen == {"addr": ""}
