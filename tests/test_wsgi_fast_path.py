"""The WSGI adapter's per-request work in C (core/wsgi_fast.pyx) decides as the rules in
fastloop/wsgi.py say, over real sockets: REMOTE_PORT per connection on keep-alive (its cache),
the environ keys of well-known header names, the application's header names matched as
str.lower() would match them, Content-Length values, and the lookup that sends requests to
the application while the App's routes stay live."""

import http.client
import io
import json
import socket

from helpers import running_server

from fastloop.routes import NOT_FOUND
from fastloop.wsgi import WSGIApp


def read_answer(sock):
    """(status, {lower name: [values]}, body) of one Content-Length answer on sock."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.lower(), []).append(value.strip())
    length = int(headers["content-length"][0])
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece
        body += piece
    assert len(body) == length  # one answer at a time: nothing more was asked
    return int(lines[0].split()[1]), headers, body


def environ_app(environ, start_response):
    data = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def test_remote_port_is_each_connections_own_on_keep_alive():
    with running_server(WSGIApp(environ_app)) as srv:
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
        try:
            # Interleaved, several requests each: later ones are answered from the cache.
            for sock in socks * 3:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                status, _, body = read_answer(sock)
                env = json.loads(body)
                assert status == 200
                assert env["REMOTE_ADDR"] == "127.0.0.1"
                assert env["REMOTE_PORT"] == str(sock.getsockname()[1])
        finally:
            for sock in socks:
                sock.close()


def test_known_header_names_in_any_case_and_repeats():
    with running_server(WSGIApp(environ_app)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhOsT: a.example\r\nUSER-AGENT: ua\r\nAccept: x\r\n"
                         b"accept: y\r\nX-Forwarded-For: 192.0.2.1\r\nDNT: 1\r\nPriorityx: 2\r\n"
                         b"Connection: keep-alive\r\n\r\n")
            env = json.loads(read_answer(sock)[2])
    assert env["HTTP_HOST"] == "a.example" and env["SERVER_NAME"] == "a.example"
    assert env["HTTP_USER_AGENT"] == "ua"
    assert env["HTTP_ACCEPT"] == "x,y"
    assert env["HTTP_X_FORWARDED_FOR"] == "192.0.2.1"
    assert env["HTTP_DNT"] == "1" and env["HTTP_PRIORITYX"] == "2" and "HTTP_PRIORITY" not in env
    assert env["HTTP_CONNECTION"] == "keep-alive"


# Each path's header list, and the body the application returns.
CASES = {
    "/case": ([("CONTENT-TYPE", "text/x"), ("content-LENGTH", "3"), ("Content-Typo", "kept"),
               ("KEEP-ALIVE", "timeout=5"), ("DATE", "Mon"), ("sErVeR", "app"), ("TE", "x"),
               ("Trailer", "x"), ("UpGrade", "h2c"), ("Proxy-Authorization", "x"),
               ("X-A-Header-Name-Longer-Than-Nineteen", "kept")], b"abcdef"),
    "/spaced-length": ([("Content-Length", " \t4\t ")], b"abcdef"),
    "/zeros-length": ([("Content-Length", "0004")], b"abcdef"),
    "/wide-digit-length": ([("Content-Length", "\uff14")], b"abcdef"),
    "/signed-length": ([("Content-Length", "+4")], b"abcdef"),
    "/latin1-name": ([("X-\u00e9", "1")], b"abcdef"),
    "/wide-name": ([("X-\u0100", "1")], b"abcdef"),
    "/wide-value": ([("X-Note", "\u0100")], b"abcdef"),
}


def headers_app(environ, start_response):
    headers, body = CASES[environ["PATH_INFO"]]
    start_response("200 OK", list(headers))
    return [body]


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, [(k.lower(), v) for k, v in resp.getheaders()], resp.read()
    finally:
        conn.close()


def test_the_applications_header_names_ignore_case_as_str_lower():
    with running_server(WSGIApp(headers_app)) as srv:
        status, headers, body = get(srv.port, "/case")
    names = [name for name, _ in headers]
    assert (status, body) == (200, b"abc")  # content-LENGTH: 3 cut the body
    assert ("content-type", "text/x") in headers and names.count("content-type") == 1
    assert ("content-length", "3") in headers and names.count("content-length") == 1
    assert ("content-typo", "kept") in headers
    assert ("x-a-header-name-longer-than-nineteen", "kept") in headers
    for dropped in ("keep-alive", "te", "trailer", "upgrade", "proxy-authorization"):
        assert dropped not in names
    assert ("server", "app") not in headers and ("date", "Mon") not in headers


def test_content_length_values_ascii_digits_only():
    with running_server(WSGIApp(headers_app)) as srv:
        assert get(srv.port, "/spaced-length")[::2] == (200, b"abcd")
        assert get(srv.port, "/zeros-length")[::2] == (200, b"abcd")
        # Not ASCII digits: no declared length, the whole body goes out.
        assert get(srv.port, "/wide-digit-length")[::2] == (200, b"abcdef")
        assert get(srv.port, "/signed-length")[::2] == (200, b"abcdef")


def test_names_and_values_that_cannot_be_sent_answer_500():
    with running_server(WSGIApp(headers_app)) as srv:
        for path in ("/latin1-name", "/wide-name", "/wide-value"):
            assert get(srv.port, path)[::2] == (500, b"Internal Server Error"), path


def test_routes_added_after_start_still_come_first():
    app = WSGIApp(headers_app)
    with running_server(app) as srv:
        assert get(srv.port, "/late")[0] == 500  # the application's KeyError

        @app.get("/late")
        def late(request):
            return "route"

        @app.get("/items/{n:int}")
        def item(request, n):
            return f"item {n}"

        app.mount_wsgi("/env", environ_app)
        assert get(srv.port, "/late")[::2] == (200, b"route")
        assert get(srv.port, "/items/7")[::2] == (200, b"item 7")
        assert json.loads(get(srv.port, "/env/x")[2])["SCRIPT_NAME"] == "/env"
        assert get(srv.port, "/case")[::2] == (200, b"abc")  # the application still
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("POST", "/late")
        assert conn.getresponse().status == 405  # a route's 405 stays a 405
        conn.close()


class Chosen(WSGIApp):
    """A subclass that decides its own lookup: the core asks it, not the C one."""

    def _lookup(self, request):
        match = WSGIApp._lookup(self, request)
        if request.path == "/gone":
            return NOT_FOUND
        return match


def test_a_subclass_lookup_is_asked():
    with running_server(Chosen(headers_app)) as srv:
        assert get(srv.port, "/gone")[0] == 404
        assert get(srv.port, "/case")[::2] == (200, b"abc")


def test_server_name_and_port_from_the_host_asked_for():
    cases = [(b"a.example", ("a.example", "80")), (b"a.example:8080", ("a.example", "8080")),
             (b"a.example:", ("a.example", "80")), (b"[::1]:81", ("[::1]", "81")),
             (b"[::1]", ("[::1]", "80")), (b"10.0.0.1:1", ("10.0.0.1", "1"))]
    with running_server(WSGIApp(environ_app)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            for host, expected in cases:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
                status, _, body = read_answer(sock)
                env = json.loads(body)
                assert status == 200, host
                assert (env["SERVER_NAME"], env["SERVER_PORT"]) == expected, host
                assert env["HTTP_HOST"] == host.decode()


def test_keys_a_request_does_not_set_are_absent_not_placeholders(tmp_path):
    seen = []

    def app(environ, start_response):
        seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    path = str(tmp_path / "s.sock")
    with running_server(WSGIApp(app), uds=path):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(sock)[0] == 200
    with running_server(WSGIApp(app)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert read_answer(sock)[0] == 200
    over_unix, http10 = seen
    assert over_unix["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in over_unix
    assert over_unix["HTTP_HOST"] == "x"
    assert "HTTP_HOST" not in http10 and http10["REMOTE_PORT"].isdigit()
    for env in seen:
        for key, value in env.items():
            # Every value is what PEP 3333 says it is: no placeholder is left in.
            assert type(value) in (str, bool, tuple, type) or key in ("wsgi.input", "wsgi.errors"), key


def test_base_environ_is_read_only_and_can_be_replaced():
    app = WSGIApp(environ_app)
    with running_server(app) as srv:
        try:
            app.wsgi.base_environ["wsgi.url_scheme"] = "https"
        except TypeError:
            pass
        else:
            raise AssertionError("base_environ took a change it would not use")
        app.wsgi.base_environ = {**app.wsgi.base_environ, "wsgi.url_scheme": "https", "X_EXTRA": "1"}
        env = json.loads(get(srv.port, "/")[2])
    assert env["wsgi.url_scheme"] == "https" and env["X_EXTRA"] == "1"


def test_an_empty_body_reads_as_an_empty_bytesio_would():
    seen = []

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        empty = io.BytesIO()
        seen.append([
            (stream.read(), stream.read(5), stream.read(None), stream.readline(), stream.readline(3),
             stream.readlines(), stream.readlines(10), list(stream), stream.tell(), stream.seek(0),
             stream.readable(), stream.seekable(), stream.readinto(bytearray(4)),
             isinstance(stream, io.BufferedIOBase), environ.get("CONTENT_LENGTH")),
            (empty.read(), empty.read(5), empty.read(None), empty.readline(), empty.readline(3),
             empty.readlines(), empty.readlines(10), list(empty), empty.tell(), empty.seek(0),
             empty.readable(), empty.seekable(), empty.readinto(bytearray(4)),
             isinstance(empty, io.BufferedIOBase), None),
        ])
        seen.append((stream.read(), stream.writable()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with running_server(WSGIApp(app)) as srv:
        assert get(srv.port, "/")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("POST", "/", body=b"line 1\nline 2")
        assert conn.getresponse().status == 200
        conn.close()
    (ours, bytesio), (first_read, writable), (with_body, _), _ = seen
    assert ours == bytesio and first_read == b""
    assert writable is False  # (read-only: nothing an application writes would be read)
    assert with_body[0] == b"line 1\nline 2"  # a body still comes in a BytesIO of its own
