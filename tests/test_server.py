"""fastloop over real sockets on loopback: keep-alive, pipelining, bodies, errors, dispatch."""

import http.client
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from helpers import open_fds, raw_request, running_server, wait_until

import fastloop

H = b"Host: t\r\n"


def make_app():
    app = fastloop.App()
    app.static("/", b"Hello, World!")

    @app.route("/echo", methods=("POST", "PUT"))
    def echo(request):
        return fastloop.Response(request.body, headers=[("X-Method", request.method)],
                                 content_type="application/octet-stream")

    @app.route("/n")
    def n(request):
        return request.query

    @app.route("/big")
    def big(request):
        return b"x" * int(request.query)

    @app.route("/boom")
    def boom(request):
        raise RuntimeError("handler failure")

    @app.route("/headers")
    def headers(request):
        return "|".join(f"{k}={v}" for k, v in request.headers)

    @app.route("/bad")
    def bad(request):
        return 42

    @app.route("/slow")
    def slow(request):
        time.sleep(float(request.query or 0.3))
        return "slept"

    return app


def read_response(sock_file):
    """Reads one response from a socket makefile('rb'): (status, headers dict, body)."""
    status_line = sock_file.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = sock_file.read(int(headers.get("content-length", 0)))
    return status, headers, body


@pytest.fixture(scope="module")
def server():
    with running_server(make_app(), runtime_threads=2) as srv:
        yield srv


def connect(srv):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=5)


def test_keep_alive_many_requests_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for i in range(50):
        conn.request("GET", f"/n?{i}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == str(i).encode()
        assert resp.getheader("Date")
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, World!"
    conn.close()


def test_connection_close_is_honoured_and_echoed(server):
    data = raw_request(server.port, b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in data
    assert data.endswith(b"Hello, World!")  # and the server closed: raw_request returned


def test_http10_closes_by_default_and_keeps_alive_when_asked(server):
    data = raw_request(server.port, b"GET /n?a HTTP/1.0\r\n\r\n")
    assert b"Connection: close" in data and data.endswith(b"a")
    with connect(server) as s:
        f = s.makefile("rb")
        for q in (b"x", b"y"):
            s.sendall(b"GET /n?" + q + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = read_response(f)
            assert (status, headers["connection"], body) == (200, "keep-alive", q)


def test_head_has_no_body(server):
    for path in (b"/", b"/n?abc"):
        data = raw_request(server.port, b"HEAD " + path + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == b""
        assert b"Content-Length: " in head


def test_pipelined_answers_come_in_order(server):
    requests = []
    expected = []
    for i in range(60):
        if i % 3 == 0:
            requests.append(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
            expected.append(b"Hello, World!")
        else:
            requests.append(b"GET /n?%d HTTP/1.1\r\n" % i + H + b"\r\n")
            expected.append(b"%d" % i)
    with connect(server) as s:
        s.sendall(b"".join(requests))
        f = s.makefile("rb")
        got = [read_response(f)[2] for _ in requests]
    assert got == expected


def test_request_split_byte_by_byte(server):
    req = b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\nhello world"
    with connect(server) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(req)):
            s.sendall(req[i:i + 1])
            time.sleep(0.001)
        status, headers, body = read_response(s.makefile("rb"))
    assert (status, body, headers["x-method"]) == (200, b"hello world", "POST")


def test_request_body_and_expect_continue(server):
    body = os.urandom(300_000)
    with connect(server) as s:
        s.sendall(b"PUT /echo HTTP/1.1\r\n" + H
                  + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        f = s.makefile("rb")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(body)
        status, _, echoed = read_response(f)
    assert status == 200 and echoed == body


def test_large_response_to_a_slow_reader(server):
    size = 12 * 1024 * 1024  # more than loopback's socket buffers hold
    with connect(server) as s:
        s.sendall(b"GET /big?%d HTTP/1.1\r\n" % size + H + b"\r\n")
        time.sleep(0.3)  # the server meets a full socket buffer and must wait for writable
        f = s.makefile("rb")
        status, headers, body = read_response(f)
        assert status == 200 and len(body) == size and body.count(b"x") == size
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")  # the connection still works
        assert read_response(f)[2] == b"Hello, World!"


def test_handler_errors_answer_500_and_the_worker_lives_on(server):
    with connect(server) as s:
        f = s.makefile("rb")
        for path in (b"/boom", b"/bad"):
            s.sendall(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
            status, _, body = read_response(f)
            assert status == 500 and b"handler failure" not in body
        s.sendall(b"GET /n?ok HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(f)[2] == b"ok"


def test_not_found_and_method_not_allowed(server):
    with connect(server) as s:
        f = s.makefile("rb")
        s.sendall(b"GET /missing HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(f)[0] == 404
        s.sendall(b"DELETE / HTTP/1.1\r\n" + H + b"\r\n")
        status, headers, _ = read_response(f)
        assert status == 405 and headers["allow"] == "GET, HEAD"
        s.sendall(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n")
        status, headers, _ = read_response(f)
        assert status == 405 and headers["allow"] == "POST, PUT"


def test_headers_reach_the_handler(server):
    data = raw_request(server.port, b"GET /headers HTTP/1.1\r\n" + H
                       + b"X-One: 1\r\nX-One: 2\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"host=t|x-one=1|x-one=2|connection=close")


@pytest.mark.parametrize("bad,status", [
    (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999\r\n\r\n", 413),
])
def test_bad_request_gets_its_status_and_nothing_after_it_is_parsed(server, bad, status):
    before = server.stats()["parse_errors"]
    smuggled = b"GET /n?smuggled HTTP/1.1\r\n" + H + b"\r\n"
    data = raw_request(server.port, bad + smuggled)
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close" in data
    assert b"smuggled" not in data and data.count(b"HTTP/1.1") == 1
    assert server.stats()["parse_errors"] == before + 1


def test_half_closed_client_gets_its_answers(server):
    with connect(server) as s:
        s.sendall(b"GET /n?1 HTTP/1.1\r\n" + H + b"\r\nGET /n?2 HTTP/1.1\r\n" + H + b"\r\n")
        s.shutdown(socket.SHUT_WR)
        f = s.makefile("rb")
        assert [read_response(f)[2] for _ in range(2)] == [b"1", b"2"]
        assert f.read() == b""  # then the server closes


def test_client_reset_mid_request_is_survived(server):
    for partial in (b"GET / HT", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nabc"):
        s = connect(server)
        s.sendall(partial)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    assert raw_request(server.port,
                       b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n").endswith(b"Hello, World!")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_interop(server):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # a sanitizer run's libasan
    out = subprocess.run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{server.port}/",
                          f"http://127.0.0.1:{server.port}/n?curl", "-d", "", "-X", "GET"],
                         capture_output=True, timeout=10, env=env)
    assert out.returncode == 0 and out.stdout == b"Hello, World!curl"


@pytest.mark.parametrize("dispatch", ["reuseport", "acceptor"])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_concurrent_clients_every_dispatch(dispatch, threads):
    clients, per_client = 16, 25
    errors = []

    def client(srv, k):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            for i in range(per_client):
                path = "/" if i % 2 else f"/n?{k}-{i}"
                conn.request("GET", path)
                body = conn.getresponse().read()
                assert body == (b"Hello, World!" if i % 2 else f"{k}-{i}".encode())
            conn.close()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    with running_server(make_app(), runtime_threads=threads, dispatch=dispatch) as srv:
        ts = [threading.Thread(target=client, args=(srv, k)) for k in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert not errors
        deadline = time.time() + 5
        while srv.stats()["open"] and time.time() < deadline:
            time.sleep(0.02)
        stats = srv.stats()
        assert stats["requests"] == clients * per_client
        assert stats["accepted"] == clients
        assert stats["accepted"] == stats["closed"] + stats["open"]
        if threads > 1:
            busy = [w for w in stats["workers"] if w["accepted"]]
            assert len(busy) >= 2, "connections should spread over the workers"


def test_ipv6_and_unix_socket(tmp_path):
    if socket.has_ipv6:
        try:
            with running_server(make_app(), host="::1") as srv:
                with socket.create_connection(("::1", srv.port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
                    assert read_response(s.makefile("rb"))[2] == b"Hello, World!"
        except OSError as exc:
            if "Cannot assign" not in str(exc) and "not available" not in str(exc):
                raise
    path = str(tmp_path / "fastloop.sock")
    for threads in (1, 2):
        with running_server(make_app(), uds=path, runtime_threads=threads) as srv:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(path)
                s.sendall(b"GET /n?uds HTTP/1.1\r\n" + H + b"\r\n")
                assert read_response(s.makefile("rb"))[2] == b"uds"
            assert srv.dispatch == ("acceptor" if threads > 1 else srv.dispatch)
        assert not os.path.exists(path)


def test_timeouts_close_slow_and_idle_clients():
    timeouts = {"header": 0.3, "idle": 0.3}
    with running_server(make_app(), timeouts=timeouts) as srv:
        slow = connect(srv)
        slow.sendall(b"GET / HTTP/1.1\r\nHo")  # never finishes its head
        idle = connect(srv)
        idle.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        f = idle.makefile("rb")
        assert read_response(f)[2] == b"Hello, World!"
        time.sleep(1.0)
        assert slow.recv(1024).startswith(b"HTTP/1.1 408 ")
        assert f.read() == b""  # closed by the idle timeout
        slow.close()
        idle.close()
        stats = srv.stats()
        assert stats["timeouts"] == {"header": 1, "idle": 1}
        assert stats["open"] == 0 and stats["accepted"] == stats["closed"] == 2


def test_stop_under_load_leaves_no_descriptor_open():
    before = set(open_fds())
    stop_at = threading.Event()
    answered = []

    def client(port):
        while not stop_at.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                for _ in range(20):
                    conn.request("GET", "/slow?0.01" if len(answered) % 7 == 0 else "/")
                    conn.getresponse().read()
                    answered.append(1)
                conn.close()
            except (OSError, http.client.HTTPException):
                return

    srv = fastloop.Server(make_app(), port=0, runtime_threads=2)
    srv.start()
    ts = [threading.Thread(target=client, args=(srv.port,)) for _ in range(8)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    srv.stop(timeout=2.0)
    stop_at.set()
    for t in ts:
        t.join(10)
    stats = srv.stats()
    assert len(answered) > 100
    assert stats["open"] == 0 and stats["accepted"] == stats["closed"]
    time.sleep(0.1)
    assert set(open_fds()) - before == set()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_graceful_stop_finishes_a_request_in_flight():
    with running_server(make_app()) as srv:
        s = connect(srv)
        s.sendall(b"GET /slow?0.5 HTTP/1.1\r\n" + H + b"\r\n")
        time.sleep(0.1)
        stopper = threading.Thread(target=srv.stop, args=(3.0,))
        stopper.start()
        status, headers, body = read_response(s.makefile("rb"))
        stopper.join(5)
        s.close()
    assert (status, body, headers["connection"]) == (200, b"slept", "close")


def refused(port):
    """The listener is closed (or closing: a probe that raced the close is reset)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


@pytest.mark.parametrize("path", [b"/", b"/n?1", b"/upload"])  # core, handler, streamed body
def test_graceful_stop_answers_the_next_request_of_a_kept_alive_connection(path):
    # A keep-alive client whose answer came just before the stop sends its next request at
    # once. The server keeps the connection open for it (FL_FRESH_GRACE_MS, 1 s) and answers
    # it with Connection: close; closing it as idle would reset that request away.
    app = make_app()

    @app.route("/upload", methods=("GET",), stream=True)
    def upload(request):
        return str(sum(len(piece) for piece in request.stream()))

    with running_server(app) as srv:
        s = connect(srv)
        f = s.makefile("rb")
        s.sendall(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
        status, headers, _ = read_response(f)
        assert status == 200 and "connection" not in headers
        stopper = threading.Thread(target=srv.stop, args=(5.0,))
        stopper.start()
        assert wait_until(lambda: refused(srv.port), 5.0)  # the stop has begun
        s.sendall(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
        status, headers, _ = read_response(f)
        assert f.read(1) == b""  # then closed
        f.close()
        s.close()  # the server lingers until it sees this
        stopper.join(10)
    assert (status, headers.get("connection")) == (200, "close")


def test_graceful_stop_closes_an_idle_connection_after_the_grace():
    with running_server(make_app()) as srv:
        s = connect(srv)
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        f = s.makefile("rb")
        assert read_response(f)[0] == 200
        started = time.monotonic()
        srv.stop(5.0)  # returns once every connection is closed
        took = time.monotonic() - started
        assert f.read(1) == b""
        f.close()
        s.close()
    assert 0.9 < took < 4.5  # after the 1 s grace, well before the 5 s deadline


def test_handler_sees_client_and_server_addresses(tmp_path):
    app = fastloop.App()
    seen = []

    @app.route("/who")
    def who(request):
        seen.append(request)
        return repr((request.client, request.server))

    with running_server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /who HTTP/1.1\r\n" + H + b"\r\n")
            body = read_response(s.makefile("rb"))[2]
            mine = s.getsockname()
            assert body.decode() == repr((mine, ("127.0.0.1", srv.port)))
    assert seen[0].client == mine  # cached: still there after the handler
    path = str(tmp_path / "who.sock")
    with running_server(app, uds=path) as srv:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /who HTTP/1.1\r\n" + H + b"\r\n")
            assert read_response(s.makefile("rb"))[2].decode() == repr(("", path))


def test_headers_look_up_by_name_ignoring_case():
    app = fastloop.App()
    seen = {}

    @app.route("/h")
    def h(request):
        hs = request.headers
        seen.update(first=hs.get("X-Multi"), all=hs.getall("x-MULTI"), has="HOST" in hs,
                    item=hs["host"], missing=hs.get("nope", "-"), pairs=list(hs))
        return "ok"

    with running_server(app) as srv:
        raw_request(srv.port, b"GET /h HTTP/1.1\r\nHost: t\r\nX-Multi: 1\r\nx-multi: 2\r\n"
                    b"Connection: close\r\n\r\n")
    assert seen == {"first": "1", "all": ["1", "2"], "has": True, "item": "t", "missing": "-",
                    "pairs": [("host", "t"), ("x-multi", "1"), ("x-multi", "2"), ("connection", "close")]}
