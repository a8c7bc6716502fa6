"""fastloop.App routing: methods, path parameters, 404 and 405, first as a table against
App._resolve and the exact-path table, then over real sockets."""

import pytest
from helpers import raw_request, running_server

import fastloop


class FakeRequest:
    """What routing reads from a request: its method and path."""

    def __init__(self, method, path):
        self.method = method
        self.path = path


def make_app():
    app = fastloop.App()
    app.static("/", "home")

    @app.get("/users/{id:int}")
    def get_user(request, id):
        return f"user {id!r}"

    @app.delete("/users/{id:int}")
    def delete_user(request, id):
        return f"deleted {id!r}"

    @app.get("/users/me")  # an exact path beats a pattern registered before it
    def me(request):
        return "me"

    @app.get("/users/{name}")
    def user_by_name(request, name):
        return f"name {name!r}"

    @app.get("/files/{rest:path}")
    def files(request, rest):
        return f"file {rest!r}"

    @app.get("/price/{amount:float}/{currency}")
    def price(request, amount, currency):
        return f"{amount!r} {currency}"

    @app.post("/items")
    def create(request):
        return fastloop.Response(b"created", 201)

    @app.get("/items")
    def list_items(request):
        return "items"

    @app.route("/any", methods=["put", "patch"])
    def any_(request):
        return request.method

    @app.post("/")  # a POST beside the static GET
    def post_home(request):
        return "posted home"

    return app


def call(app, method, path):
    """(handler result, allowed methods) as the core would compute them, or "404"/"405"."""
    entry = app._routes.get(path) or app._resolve(FakeRequest(method, path))
    if entry is None:
        return "404"
    handler, methods = entry
    if method not in methods:
        return ("405", tuple(methods))
    return handler(FakeRequest(method, path))


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/users/42", "user 42"),
    ("HEAD", "/users/42", "user 42"),                     # GET answers HEAD
    ("DELETE", "/users/7", "deleted 7"),
    ("GET", "/users/me", "me"),
    ("GET", "/users/bob", "name 'bob'"),                  # int did not match, str does
    ("GET", "/users/a%20b", "name 'a b'"),                # values are percent-decoded
    ("GET", "/users/a%2Fb", "name 'a/b'"),                # an encoded slash stays in its segment
    ("GET", "/users/a/b", "404"),
    ("GET", "/users/", "404"),
    ("GET", "/files/a/b/c.txt", "file 'a/b/c.txt'"),
    ("GET", "/files/", "file ''"),
    ("GET", "/price/9.5/EUR", "9.5 EUR"),
    ("GET", "/price/9/EUR", "9.0 EUR"),
    ("GET", "/price/x/EUR", "404"),
    ("GET", "/items", "items"),
    ("PUT", "/any", "PUT"),
    ("PATCH", "/any", "PATCH"),
    ("POST", "/", "posted home"),
    ("GET", "/nothing", "404"),
    ("PUT", "/users/42", ("405", ("GET", "HEAD", "DELETE"))),
    ("DELETE", "/users/bob", ("405", ("GET", "HEAD"))),   # the first match names Allow
    ("DELETE", "/items", ("405", ("POST", "GET", "HEAD"))),
    ("GET", "/any", ("405", ("PUT", "PATCH"))),
    ("DELETE", "/", ("405", ("GET", "HEAD", "POST"))),
])
def test_routing_table(method, path, expected):
    result = call(make_app(), method, path)
    if isinstance(result, fastloop.Response):
        result = result.body.decode()
    assert result == expected


def test_one_handler_per_path_is_called_directly():
    app = make_app()
    handler, methods = app._routes["/users/me"]
    assert handler.__name__ == "me" and methods == ("GET", "HEAD")


def test_a_route_replaces_a_static_get_and_keeps_other_methods():
    app = fastloop.App()
    app.static("/x", "static")
    assert [s[0] for s in app._static_responses()] == [b"/x"]

    @app.post("/x")
    def post(request):
        return "post"

    assert [s[0] for s in app._static_responses()] == [b"/x"]  # GET is still answered in C

    @app.get("/x")
    def get(request):
        return "dynamic"

    assert app._static_responses() == []
    assert call(app, "GET", "/x") == "dynamic" and call(app, "POST", "/x") == "post"


@pytest.mark.parametrize("path,error", [
    ("users/{id}", "starts with '/'"),
    ("/u/{id:uuid}", "unknown converter"),
    ("/u/{id}/{id}", "appears twice"),
    ("/u/{1x}", "invalid path parameter"),
    ("/u/{request}", "invalid path parameter"),
])
def test_bad_route_paths_are_refused_at_registration(path, error):
    with pytest.raises(ValueError, match=error):
        fastloop.App().route(path)


def test_a_static_route_has_no_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        fastloop.App().static("/{x}", "no")


# ---- over real sockets ---------------------------------------------------------------------

def get(port, method, path, body=b""):
    head, _, payload = raw_request(port, b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                   b"Content-Length: %d\r\n\r\n%s" % (method, path, len(body), body)
                                   ).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, payload


def test_routes_over_sockets():
    with running_server(make_app(), runtime_threads=2) as srv:
        assert get(srv.port, b"GET", b"/")[::2] == (200, b"home")
        assert get(srv.port, b"GET", b"/users/42?x=1")[::2] == (200, b"user 42")
        assert get(srv.port, b"DELETE", b"/users/42")[::2] == (200, b"deleted 42")
        status, headers, body = get(srv.port, b"HEAD", b"/users/42")
        assert (status, headers[b"Content-Length"], body) == (200, b"7", b"")
        status, headers, _ = get(srv.port, b"PUT", b"/users/42")
        assert (status, headers[b"Allow"]) == (405, b"GET, HEAD, DELETE")
        assert get(srv.port, b"GET", b"/users/x/y")[0] == 404
        assert get(srv.port, b"POST", b"/items", b"{}")[::2] == (201, b"created")
        assert get(srv.port, b"POST", b"/")[::2] == (200, b"posted home")
        assert get(srv.port, b"GET", b"/files/a/b")[2] == b"file 'a/b'"


def test_a_failing_pattern_handler_answers_500_and_the_server_lives_on():
    app = fastloop.App()

    @app.get("/boom/{n:int}")
    def boom(request, n):
        raise RuntimeError(f"secret {n}")

    with running_server(app) as srv:
        status, _, body = get(srv.port, b"GET", b"/boom/1")
        assert status == 500 and b"secret" not in body
        assert get(srv.port, b"GET", b"/boom/x")[0] == 404


def test_stream_routes_are_exact_paths_listed_for_the_core():
    app = fastloop.App()

    @app.route("/upload", methods=["POST"], stream=True)
    def upload(request):
        return str(sum(len(piece) for piece in request.stream()))

    assert app._stream_paths == ["/upload"]
    with pytest.raises(ValueError, match="exact path"):
        app.route("/up/{name}", methods=["POST"], stream=True)
    with running_server(app) as srv:
        assert get(srv.port, b"POST", b"/upload", b"x" * 100_000)[::2] == (200, b"100000")
