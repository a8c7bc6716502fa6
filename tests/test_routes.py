"""The route table (fastloop/routes.py): what an App compiles to and all the core reads of
it. First the table itself, against fake requests (lookup results, 405 with Allow, statics,
wrapping), then a table served over real sockets, to show which part of it the core uses."""

import logging
import socket

import pytest
from helpers import raw_request, running_server

import fastloop
from fastloop._access import AccessLogApp
from fastloop.routes import (ANY_METHOD, FOUND, HTTP, METHOD_NOT_ALLOWED, NOT_FOUND,
                             NOT_FOUND_STATUS, WEBSOCKET, Match, RouteTable, StaticRoute, found,
                             method_not_allowed)
from fastloop.wsgi import WSGIApp


class FakeRequest:
    """What routing reads of a request: its method and path."""

    def __init__(self, method, path):
        self.method = method
        self.path = path


def make_app():
    app = fastloop.App()
    app.static("/", "home")

    @app.get("/users/{id:int}")
    def user(request, id):
        return f"user {id}"

    @app.route("/items", methods=["GET", "POST"])
    def items(request):
        return "items"

    @app.delete("/items")
    def delete_items(request):
        return "deleted"

    @app.route("/up", methods=["POST"], stream=True)
    def up(request):
        return "up"

    return app


def answer(match, method, path):
    """What the core would send for match: (status, body, Allow or None)."""
    params = match.params or {}
    result = match.handler(FakeRequest(method, path), **params)
    if isinstance(result, fastloop.Response):
        return result.status, result.body, dict(result.headers or {}).get("Allow")
    return 200, result, None


def test_an_app_compiles_to_statics_streaming_paths_exact_and_lookup():
    table = make_app().route_table()
    assert table.statics == (StaticRoute(b"/", table.statics[0].head, b"home"),)
    assert table.statics[0].head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 4\r\n" in table.statics[0].head
    assert table.stream_paths == ("/up",)
    assert table.stream_bodies is False and table.on_rejected is None
    assert sorted(table.exact) == ["/", "/items", "/up"]  # the static's Python twin included
    assert table.exact["/items"].methods == ("GET", "HEAD", "POST", "DELETE")


@pytest.mark.parametrize("method,path,status,params,methods", [
    ("GET", "/items", FOUND, None, ("GET", "HEAD", "POST", "DELETE")),
    ("HEAD", "/", FOUND, None, ("GET", "HEAD")),                      # the static's twin
    ("GET", "/users/7", FOUND, {"id": 7}, ("GET", "HEAD")),
    ("GET", "/users/x", NOT_FOUND_STATUS, None, ()),
    ("GET", "/nowhere", NOT_FOUND_STATUS, None, ()),
    ("PUT", "/items", METHOD_NOT_ALLOWED, None, ("GET", "HEAD", "POST", "DELETE")),
    ("PUT", "/users/7", METHOD_NOT_ALLOWED, None, ("GET", "HEAD")),
    ("GET", "/up", METHOD_NOT_ALLOWED, None, ("POST",)),
])
def test_lookup_results(method, path, status, params, methods):
    table = make_app().route_table()
    match = table.lookup(FakeRequest(method, path))
    assert (match.status, match.params, tuple(match.methods), match.kind) == \
        (status, params, methods, HTTP)
    assert table.find(FakeRequest(method, path)) == match  # the fast path agrees


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/users/7", (200, "user 7", None)),
    ("DELETE", "/items", (200, "deleted", None)),
    ("GET", "/nowhere", (404, b"Not Found", None)),
    ("PATCH", "/items", (405, b"Method Not Allowed", "GET, HEAD, POST, DELETE")),
    ("POST", "/users/7", (405, b"Method Not Allowed", "GET, HEAD")),
    ("DELETE", "/", (405, b"Method Not Allowed", "GET, HEAD")),
])
def test_404_and_405_are_answers_of_the_lookup(method, path, expected):
    table = make_app().route_table()
    assert answer(table.find(FakeRequest(method, path)), method, path) == expected


def test_exact_is_a_fast_path_only_for_the_methods_it_takes():
    table = make_app().route_table()
    request = FakeRequest("PUT", "/items")
    assert request.method not in table.exact["/items"].methods
    assert table.find(request).status == METHOD_NOT_ALLOWED  # from lookup, not from exact


def test_python_routes_stay_live_and_statics_are_copied():
    app = make_app()
    table = app.route_table()

    @app.get("/later")
    def later(request):
        return "later"

    app.static("/later-static", "s")
    assert table.find(FakeRequest("GET", "/later")).status == FOUND
    assert answer(table.find(FakeRequest("GET", "/later-static")), "GET", "/later-static") == \
        (200, b"s", None)  # by its Python twin: the table's statics were copied before it
    assert [s.path for s in table.statics] == [b"/"]


def test_mounts_wrap_the_pattern_lookup_and_exact_routes_win():
    app = fastloop.App()

    @app.get("/legacy/native")
    def native(request):
        return "native"

    @app.get("/legacy/{n:int}")
    def numbered(request, n):
        return f"n {n}"

    app.mount_wsgi("/legacy", lambda environ, start_response: [])
    table = app.route_table()
    mount = table.lookup(FakeRequest("GET", "/legacy/other"))
    assert mount.methods is ANY_METHOD and mount.status == FOUND
    assert table.lookup(FakeRequest("GET", "/legacy/5")).params == {"n": 5}
    assert table.lookup(FakeRequest("POST", "/legacy/5")) is mount    # a pattern's 405: the mount
    assert table.lookup(FakeRequest("POST", "/legacy/native")).status == METHOD_NOT_ALLOWED
    assert table.lookup(FakeRequest("GET", "/legacyx")) is NOT_FOUND


def test_mounts_added_after_the_table_was_compiled_are_served():
    app = fastloop.App()
    table = app.route_table()
    assert table.lookup(FakeRequest("GET", "/a/b")) is NOT_FOUND
    app.mount_wsgi("/a", lambda environ, start_response: [])
    mount = table.lookup(FakeRequest("GET", "/a/b"))
    assert mount.status == FOUND and table.lookup(FakeRequest("GET", "/a")) is mount
    assert table.lookup(FakeRequest("GET", "/ab")) is NOT_FOUND


def test_a_match_is_a_tuple_read_by_position_and_by_name():
    match = found(len, ("GET",), {"id": 1}, kind=WEBSOCKET)
    assert tuple(match) == (len, {"id": 1}, ("GET",), FOUND, WEBSOCKET)
    assert (match.handler, match.params, match.methods, match.status, match.kind) == tuple(match)
    other = match.with_handler(repr)
    assert type(other) is Match and other.handler is repr and other[1:] == match[1:]
    assert "kind='websocket'" in repr(match)
    assert NOT_FOUND.status == NOT_FOUND_STATUS and NOT_FOUND.kind == HTTP
    not_allowed = method_not_allowed(["GET", "HEAD"])
    assert (not_allowed.status, not_allowed.methods) == (METHOD_NOT_ALLOWED, ("GET", "HEAD"))
    assert answer(not_allowed, "PUT", "/") == (405, b"Method Not Allowed", "GET, HEAD")


def test_a_wsgi_app_takes_what_the_routes_do_not_find_but_not_their_405():
    app = WSGIApp(lambda environ, start_response: [])
    app.static("/health", "ok")
    table = app.route_table()
    assert table.lookup(FakeRequest("GET", "/anything")).handler is app.wsgi
    assert table.lookup(FakeRequest("POST", "/health")).status == METHOD_NOT_ALLOWED

    @app.get("/n/{n:int}")
    def numbered(request, n):
        return "n"

    assert table.lookup(FakeRequest("GET", "/n/1")).params == {"n": 1}
    assert table.lookup(FakeRequest("PUT", "/n/1")).status == METHOD_NOT_ALLOWED
    assert table.lookup(FakeRequest("GET", "/n/x")).handler is app.wsgi


def test_wrapped_wraps_every_handler_404_and_405_included_and_keeps_the_kind():
    seen = []

    def wrap(handler):
        def wrapped(request, **params):
            seen.append(request.path)
            return handler(request, **params)
        return wrapped

    socket_kind = found(lambda request: "ws", ("GET",), kind=WEBSOCKET)
    table = RouteTable(lambda request: NOT_FOUND, {"/ws": socket_kind},
                       statics=[(b"/s", b"HTTP/1.1 200 OK\r\n", b"")])
    inner = make_app().route_table()
    for t in (inner, table):
        out = t.wrapped(wrap, statics=False)
        assert out.statics == () and t.statics != ()
        assert out.wrapped(wrap).stream_paths == t.stream_paths
    out = inner.wrapped(wrap)
    assert out.statics == inner.statics  # statics=True: C still answers them, unwrapped
    for method, path, status in [("GET", "/users/7", 200), ("GET", "/x", 404), ("PUT", "/items", 405),
                                 ("GET", "/items", 200)]:
        assert answer(out.find(FakeRequest(method, path)), method, path)[0] == status
    assert seen == ["/users/7", "/x", "/items", "/items"]
    assert table.wrapped(wrap).find(FakeRequest("GET", "/ws")).kind == WEBSOCKET


def test_replace_refuses_an_unknown_field():
    table = RouteTable()
    assert table.replace(stream_bodies=True).stream_bodies is True and table.stream_bodies is False
    with pytest.raises(TypeError, match="no field"):
        table.replace(routes={})


def test_the_access_log_wraps_the_table_and_takes_the_statics_over():
    app = make_app()
    table = AccessLogApp(app).route_table()
    assert table.statics == () and app.route_table().statics != ()
    assert table.on_rejected is not None  # the core's own rejections are logged too
    assert table.exact["/items"].handler is not app.route_table().exact["/items"].handler


# ---- over real sockets: what the core reads of a table ----------------------------------------

class TableApp(fastloop.App):
    """An App that hands the server a table built by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def route_table(self):
        return self.table


def status_and_headers(data):
    head = data.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return int(head[0].split()[1]), dict(line.split(b": ", 1) for line in head[1:])


def test_the_core_serves_a_hand_built_table_asking_lookup_only_on_a_miss():
    asked = []
    exact = found(lambda request: "exact", ("GET",))
    not_allowed = Match((lambda request: fastloop.Response(b"no", 405, {"Allow": "GET"}), None,
                         ("GET",), METHOD_NOT_ALLOWED, HTTP))

    def lookup(request):
        asked.append((request.method, request.path))
        if request.path == "/exact":
            return not_allowed
        if request.path.startswith("/p/"):
            return found(lambda request, name: f"hello {name}", ("GET",), {"name": request.path[3:]})
        return NOT_FOUND

    head = b"HTTP/1.1 200 OK\r\nServer: fastloop\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
    table = RouteTable(lookup, {"/exact": exact}, statics=[(b"/static", head, b"from C")])
    with running_server(TableApp(table)) as srv:
        def get(method, path):
            return raw_request(srv.port, b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                               % (method, path))

        assert get(b"GET", b"/static").endswith(b"\r\n\r\nfrom C")
        assert get(b"GET", b"/exact").endswith(b"\r\n\r\nexact")
        assert asked == []  # neither a static nor an exact hit asks the lookup
        assert get(b"GET", b"/p/you").endswith(b"\r\n\r\nhello you")
        data = get(b"POST", b"/exact")
        assert status_and_headers(data)[0] == 405 and data.endswith(b"no")
        assert status_and_headers(get(b"GET", b"/none"))[0] == 404
        assert asked == [("GET", "/p/you"), ("POST", "/exact"), ("GET", "/none")]


def test_405_allow_and_404_over_sockets_come_from_the_app_lookup():
    with running_server(make_app()) as srv:
        def get(method, path):
            return status_and_headers(raw_request(
                srv.port, b"%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                % (method, path)))

        status, headers = get(b"PATCH", b"/items")
        del headers[b"Date"]
        assert (status, headers) == (405, {
            b"Server": b"fastloop", b"Content-Type": b"text/plain", b"Content-Length": b"18",
            b"Connection": b"close", b"Allow": b"GET, HEAD, POST, DELETE"})
        assert get(b"DELETE", b"/users/3")[1][b"Allow"] == b"GET, HEAD"
        assert get(b"DELETE", b"/")[1][b"Allow"] == b"GET, HEAD"  # beside a static route
        assert get(b"GET", b"/users/x")[0] == 404


def test_a_lookup_that_returns_no_match_cuts_that_connection_only():
    table = RouteTable(lambda request: "not a match", {}, statics=[
        (b"/ok", b"HTTP/1.1 200 OK\r\nServer: fastloop\r\nContent-Length: 2\r\n", b"ok")])
    with running_server(TableApp(table)) as srv:
        assert raw_request(srv.port, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n", timeout=3) == b""
        assert raw_request(srv.port, b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                           ).endswith(b"\r\n\r\nok")


def test_the_access_log_wrap_logs_404_405_and_statics(caplog):
    caplog.set_level(logging.INFO, logger="fastloop.access")
    with running_server(AccessLogApp(make_app())) as srv:
        for method, path in [(b"GET", b"/"), (b"GET", b"/none"), (b"PUT", b"/items"), (b"GET", b"/users/2")]:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % (method, path))
                while s.recv(4096):
                    pass
    lines = [r.getMessage() for r in caplog.records if r.name == "fastloop.access"]
    assert [line.split('"')[1:3] for line in lines] == [
        ["GET / HTTP/1.1", " 200 4 "], ["GET /none HTTP/1.1", " 404 9 "],
        ["PUT /items HTTP/1.1", " 405 18 "], ["GET /users/2 HTTP/1.1", " 200 6 "]]


def test_a_route_registered_after_start_is_served_and_a_static_one_by_its_twin():
    app = make_app()
    with running_server(app) as srv:
        @app.get("/late/{n:int}")
        def late(request, n):
            return f"late {n}"

        app.static("/late-static", "twin")
        for path, body in [(b"/late/3", b"late 3"), (b"/late-static", b"twin")]:
            data = raw_request(srv.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n" + body)
        assert [s.path for s in srv.routes.statics] == [b"/"]  # copied at start
