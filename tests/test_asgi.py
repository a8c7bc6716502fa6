"""The ASGI server itself, with raw ASGI apps over real loopback sockets: the scope, request
bodies, responses, the application's errors, disconnects, pipelining and stop(). Each test is
one property an application relies on (asgiref's HTTP spec 2.x). Framework tests are in
test_asgi_frameworks.py, the lifespan in test_asgi_lifespan.py."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time

import pytest
from asgi_kit import Client, Seen, get, rss_kib, serve_asgi
from helpers import LOOPBACK, open_fds, wait_until
from serving import ServeProcess, get as http_get
from wire import Truncated, read_answer

from fastloop.asgi import ClientDisconnected

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")

NEXT = get("/next")


async def answer(send, body: bytes = b"ok", status: int = 200, headers=()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def until(event: threading.Event, timeout: float = 10.0) -> None:
    """Waits on the asyncio thread, without blocking it, until the test sets event."""
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never set the event")
        await asyncio.sleep(0.005)


async def echo_path(scope, receive, send):
    await answer(send, scope["path"].encode())


def stats(server) -> dict:
    out = server.stats()
    out.pop("workers")
    return out


# ---- the scope ---------------------------------------------------------------------------------

def test_the_http_scope_has_every_key_the_spec_lists():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(scope)
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(b"GET /a%20b/%C3%A9t%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-One: 1\r\n"
               b"Accept: */*\r\nx-ONE: 2\r\n\r\n")
        assert c.answer().status == 200
        scope = seen.get()
        assert scope["type"] == "http"
        assert scope["asgi"]["version"] == "3.0"
        assert scope["asgi"]["spec_version"].startswith("2.")
        assert scope["http_version"] == "1.1"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["path"] == "/a b/été"  # percent-decoded, as UTF-8
        assert scope["raw_path"] == b"/a%20b/%C3%A9t%C3%A9"
        assert scope["query_string"] == b"x=1&y=%20"
        assert scope["root_path"] == ""
        assert scope["headers"] == [(b"host", b"t"), (b"x-one", b"1"), (b"accept", b"*/*"),
                                    (b"x-one", b"2")]
        assert tuple(scope["client"]) == c.sock.getsockname()
        assert tuple(scope["server"]) == (LOOPBACK, server.port)
        assert "http.response.pathsend" in scope["extensions"]
        assert "http.response.trailers" in scope["extensions"]


@pytest.mark.parametrize("line, version, method", [
    (b"GET / HTTP/1.0", "1.0", "GET"),
    (b"POST / HTTP/1.1", "1.1", "POST"),
    (b"DELETE / HTTP/1.1", "1.1", "DELETE"),
    (b"PURGE / HTTP/1.1", "1.1", "PURGE"),
])
def test_http_version_and_method_are_the_request_lines(line, version, method):
    seen = Seen()

    async def app(scope, receive, send):
        seen.put((scope["http_version"], scope["method"]))
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(line + b"\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        c.read_until(b"ok")
        assert seen.get() == (version, method)


def test_a_path_without_escapes_and_an_empty_query():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put((scope["path"], scope["raw_path"], scope["query_string"]))
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/plain/path")).answer()
        assert seen.get() == ("/plain/path", b"/plain/path", b"")
        c.send(get("/q?")).answer()
        assert seen.get() == ("/q", b"/q", b"")


def test_header_values_are_trimmed_and_names_lower_cased():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(scope["headers"])
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHOST: t\r\nX-Pad: \t a b \t\r\nX-Empty:\r\n\r\n").answer()
        assert seen.get() == [(b"host", b"t"), (b"x-pad", b"a b"), (b"x-empty", b"")]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_over_ipv6_client_and_server_are_host_port_pairs():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put((scope["client"], scope["server"]))
        await answer(send)

    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1 here")
    with serve_asgi(app, host="::1") as server:
        with socket.create_connection(("::1", server.port), timeout=5.0) as s:
            s.sendall(get("/"))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            client, srv = seen.get()
            assert tuple(client) == s.getsockname()[:2]  # two items, not the 4-tuple of IPv6
            assert tuple(srv) == ("::1", server.port)


def test_over_a_unix_socket_server_is_the_path_and_client_none(tmp_path):
    seen = Seen()
    path = str(tmp_path / "s")

    async def app(scope, receive, send):
        seen.put((scope["client"], scope["server"]))
        await answer(send)

    with serve_asgi(app, uds=path, host=None):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5.0)
            s.connect(path)
            s.sendall(get("/"))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        client, server = seen.get()
        assert client is None and tuple(server) == (path, None)


def test_root_path_is_the_one_configured():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(scope["root_path"])
        await answer(send)

    with serve_asgi(app, root_path="/api") as server, Client(server.port) as c:
        c.send(get("/x")).answer()
        assert seen.get() == "/api"


def test_root_path_comes_from_the_root_path_flag():
    with ServeProcess(["asgi_lifespan_apps:scope_echo", "--port", "0", "--root-path", "/mounted"]) as srv:
        root_path, path = http_get(srv.url, "/x").split()
        # (Whether path then starts with root_path, as uvicorn >= 0.26 does, is not pinned.)
        assert root_path == b"/mounted" and path.endswith(b"/x")


def test_each_request_gets_its_own_copy_of_the_lifespan_state():
    seen = Seen()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["n"] = 1
            scope["state"]["shared"] = []
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.put(dict(scope["state"]))
        scope["state"]["n"] += 1  # a request's changes stay in its own copy
        scope["state"]["added"] = True
        await answer(send)

    with serve_asgi(app, lifespan="on") as server, Client(server.port) as c:
        c.send(get("/1")).answer()
        c.send(get("/2")).answer()
        first, second = seen.get(), seen.get()
        assert first["n"] == 1 and second["n"] == 1 and "added" not in second


# ---- request bodies ----------------------------------------------------------------------------

def body_recorder(seen: Seen):
    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.put(message)
            if not message.get("more_body"):
                break
        await answer(send)
    return app


def test_a_content_length_body_arrives_in_pieces_as_it_is_sent():
    seen = Seen()
    with serve_asgi(body_recorder(seen)) as server, Client(server.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        first = seen.get()
        # The app has the first piece while the rest is not sent yet.
        assert first == {"type": "http.request", "body": b"hello", "more_body": True}
        c.send(b"world")
        messages = [first]
        while messages[-1]["more_body"]:
            messages.append(seen.get())
        assert b"".join(m["body"] for m in messages) == b"helloworld"
        assert all(m["type"] == "http.request" for m in messages)
        assert c.answer().body == b"ok"
        c.send(NEXT)
        assert c.answer().body == b"ok"  # the connection goes on after a streamed body


def test_a_chunked_body_arrives_in_pieces_decoded():
    seen = Seen()
    with serve_asgi(body_recorder(seen)) as server, Client(server.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        first = seen.get()
        assert first["body"] == b"hello" and first["more_body"] is True
        c.send(b"6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        messages = [first]
        while messages[-1]["more_body"]:
            messages.append(seen.get())
        assert b"".join(m["body"] for m in messages) == b"hello world"
        assert c.answer().status == 200


def test_a_body_sent_with_its_head_ends_with_more_body_false():
    seen = Seen()
    with serve_asgi(body_recorder(seen)) as server, Client(server.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" + NEXT)
        assert c.answer().status == 200
        messages = [seen.get()]
        while messages[-1]["more_body"]:
            messages.append(seen.get())
        assert b"".join(m["body"] for m in messages) == b"abc"
        assert c.answer().status == 200
        assert seen.get() == {"type": "http.request", "body": b"", "more_body": False}  # GET


def test_an_unread_64_mib_upload_is_not_buffered_by_the_server():
    """Backpressure: the app never calls receive(); the server stops reading the socket, so
    the client's send stalls and this process's memory stays flat."""
    release = threading.Event()

    async def app(scope, receive, send):
        await until(release, 30.0)
        await answer(send)

    size = 64 << 20
    piece = b"x" * (1 << 20)
    with serve_asgi(app, limits={"body_bytes": 1 << 30}) as server, Client(server.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        before = rss_kib()
        sent = 0
        c.sock.settimeout(1.0)
        try:
            while sent < size:
                sent += c.sock.send(piece)
        except socket.timeout:
            pass  # the server stopped taking bytes: what backpressure looks like
        grown = rss_kib() - before
        release.set()
        assert sent < size // 4, f"the server took {sent} bytes of an unread body"
        assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
        c.sock.settimeout(5.0)
        answer_ = c.answer()
        assert answer_.status == 200
        assert answer_.header("connection") == b"close"  # the body was never read: close
        c.wait_closed()


def test_a_chunked_body_over_the_limit_is_refused_whatever_the_app_answers():
    """The core refuses a body that grows past limit_request_body mid-stream: the app's
    receive() says http.disconnect, its later send() raises, and the client gets 413."""
    seen = Seen()

    async def app(scope, receive, send):
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())
        seen.put(messages[-1])
        try:
            await answer(send, b"the app's answer")
        except OSError as exc:
            seen.put(exc)

    with serve_asgi(app, limits={"body_bytes": 1000}) as server, Client(server.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n"
               + b"a" * 512 + b"\r\n")
        time.sleep(0.1)  # the app holds the first piece
        c.send(b"400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n")
        got = c.answer()
        assert got.status == 413 and got.header("connection") == b"close"
        assert seen.get() == {"type": "http.disconnect"}
        assert isinstance(seen.get(), ClientDisconnected)
        assert stats(server)["asgi_app_errors"] == 0


def test_100_continue_is_sent_only_when_the_app_asks_for_the_body():
    async def reader(scope, receive, send):
        message = await receive()
        await answer(send, message["body"])

    async def refuser(scope, receive, send):
        await answer(send, b"no", status=413)

    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    with serve_asgi(reader) as server, Client(server.port) as c:
        c.send(head)
        assert c.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        c.data = c.data[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        c.send(b"body")
        assert c.answer().body == b"body"
    with serve_asgi(refuser) as server, Client(server.port) as c:
        c.send(head)
        got = c.answer()
        assert got.status == 413 and b"100 Continue" not in c.data
    with serve_asgi(reader) as server, Client(server.port) as c:
        c.send(head.replace(b"HTTP/1.1", b"HTTP/1.0") + b"body")  # no interim answers in 1.0
        assert c.answer().body == b"body"


# ---- responses ---------------------------------------------------------------------------------

def test_a_whole_body_gets_its_content_length():
    async def app(scope, receive, send):
        await answer(send, b"hello", headers=[(b"x-a", b"1"), (b"x-a", b"2")])

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        first, second = c.answer(), c.answer()
        assert first.body == b"hello" and first.header("content-length") == b"5"
        assert [v for n, v in first.headers if n == "x-a"] == [b"1", b"2"]  # repeats, in order
        assert second.body == b"hello"


def test_framing_fields_are_recognised_in_any_case():
    async def app(scope, receive, send):
        await answer(send, b"hello", headers=[
            (b"Content-Length", b" 5\t"), (b"SERVER", b"mine"), (b"dAtE", b"then"),
            (b"Keep-Alive", b"timeout=1"), (b"TRANSFER-ENCODING", b"gzip"), (b"X-Kept", b"1")])

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        first = c.answer()
        assert first.body == b"hello" and first.header("content-length") == b"5"
        assert first.count("content-length") == 1
        assert first.header("server") == b"mine" and first.count("server") == 1
        assert first.header("date") == b"then" and first.count("date") == 1
        assert first.header("keep-alive") is None and first.header("transfer-encoding") is None
        assert first.header("x-kept") == b"1"
        assert c.answer().body == b"hello"  # the connection goes on


def test_connection_close_from_the_app_in_any_case_closes_after_the_answer():
    async def app(scope, receive, send):
        await answer(send, b"bye", headers=[(b"CONNECTION", b"keep-alive, Close")])

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        first = c.answer()
        assert first.body == b"bye" and first.header("connection") == b"close"
        assert c.wait_closed() == b""


def stream_app(pieces, headers=()):
    async def app(scope, receive, send):
        if scope["path"] == "/next":
            await answer(send, b"next")
            return
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


def test_a_streamed_body_of_unknown_length_is_chunked_on_http_1_1():
    with serve_asgi(stream_app([b"ab", b"", b"cd"])) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        first = c.answer()
        assert first.header("transfer-encoding") == b"chunked" and first.body == b"abcd"
        assert c.answer().body == b"next"  # keep-alive goes on


def test_a_streamed_body_of_unknown_length_ends_with_the_close_on_http_1_0():
    with serve_asgi(stream_app([b"ab", b"cd"])) as server, Client(server.port) as c:
        c.send(get("/", b"Connection: keep-alive\r\n", version=b"1.0"))
        c.wait_closed()
        raw = c.data
        assert b"transfer-encoding" not in raw.lower() and raw.endswith(b"\r\n\r\nabcd")


def test_a_streamed_body_with_a_content_length_is_not_chunked():
    app = stream_app([b"ab", b"cd"], headers=[(b"content-length", b"4")])
    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        first = c.answer()
        assert first.header("content-length") == b"4" and first.header("transfer-encoding") is None
        assert first.body == b"abcd" and c.answer().body == b"next"


@pytest.mark.parametrize("app", [stream_app([b"abc"]), stream_app([], [(b"content-length", b"3")])],
                         ids=["streamed", "declared"])
def test_head_gets_the_head_and_no_body(app):
    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/", method=b"HEAD") + NEXT)
        assert c.answer(head=True).status == 200
        assert c.answer().body == b"next"  # nothing of a body came between the two answers


def test_head_of_a_whole_body_announces_its_length():
    with serve_asgi(echo_path) as server, Client(server.port) as c:
        c.send(get("/four", method=b"HEAD") + NEXT)
        first = c.answer(head=True)
        assert first.header("content-length") == b"5"
        assert c.answer().body == b"/next"


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_no_body(status):
    async def app(scope, receive, send):
        if scope["path"] == "/next":
            await answer(send, b"next")
            return
        await answer(send, b"dropped", status=status)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        first = c.answer()
        assert first.status == status and first.header("transfer-encoding") is None
        assert c.answer().body == b"next"


def test_each_streamed_piece_reaches_the_client_before_the_app_makes_the_next():
    go = [threading.Event() for _ in range(3)]

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i, event in enumerate(go):
            await send({"type": "http.response.body", "body": b"piece%d;" % i, "more_body": True})
            await until(event)
        await send({"type": "http.response.body", "body": b"end"})

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/"))
        for i, event in enumerate(go):
            c.read_until(b"piece%d;" % i)  # before the app was allowed to go on
            assert b"piece%d;" % (i + 1) not in c.data
            event.set()
        assert c.answer().body == b"piece0;piece1;piece2;end"


def test_a_slow_client_makes_send_wait_while_others_are_answered():
    produced = [0]
    done = Seen()

    async def app(scope, receive, send):
        if scope["path"] != "/big":
            await answer(send, b"quick")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"y" * 65536
        try:
            while produced[0] < 64 << 20:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                produced[0] += len(piece)
            await send({"type": "http.response.body", "body": b""})
        except OSError as exc:
            done.put(exc)
            raise

    with serve_asgi(app) as server:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.connect((LOOPBACK, server.port))
        try:
            before = rss_kib()
            slow.sendall(get("/big"))
            # The producer stops: what it made stays the same for a while.
            assert wait_until(lambda: produced[0] > 0)
            last = -1
            while produced[0] != last:
                last = produced[0]
                time.sleep(0.3)
            assert produced[0] < 16 << 20, f"{produced[0]} bytes produced for a client reading none"
            assert rss_kib() - before < 32 * 1024
            with Client(server.port) as other:
                assert other.send(get("/other")).answer().body == b"quick"
        finally:
            slow.close()
        assert isinstance(done.get(), ClientDisconnected)


def test_pathsend_serves_the_file(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(1 << 20) + b"end"
    path.write_bytes(data)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": str(path)})

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + get("/", method=b"HEAD") + NEXT)
        first = c.answer()
        assert first.body == data and first.header("content-length") == str(len(data)).encode()
        assert c.answer(head=True).header("content-length") == str(len(data)).encode()
        assert c.answer().body == data


def test_pathsend_streams_from_the_file_with_bounded_memory(tmp_path):
    """A 48 MiB file to a client that reads nothing: the server holds the file open and
    sends from it (sendfile), it never reads it into memory."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(48 << 20)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(path)})

    def holds_the_file() -> bool:
        return any(os.readlink(f"/proc/self/fd/{fd}") == str(path) for fd in open_fds()
                   if os.path.exists(f"/proc/self/fd/{fd}"))

    with serve_asgi(app) as server:
        before = rss_kib()
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.connect((LOOPBACK, server.port))
        try:
            slow.sendall(get("/"))
            assert wait_until(holds_the_file)
            time.sleep(0.3)
            assert rss_kib() - before < 16 * 1024
            assert holds_the_file()  # still sending, from the file
            slow.settimeout(5.0)
            got = 0
            while got < 48 << 20:
                chunk = slow.recv(1 << 20)
                assert chunk
                got += len(chunk)
        finally:
            slow.close()
        assert wait_until(lambda: not holds_the_file())  # closed once sent


def test_trailers_follow_the_last_chunk():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")],
                    "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-more", b"2")]})

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/", b"TE: trailers\r\n") + NEXT)
        c.read_until(b"x-more: 2\r\n\r\n")
        assert b"\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\n" in c.data
        first = c.answer()
        assert first.body == b"abcd" and c.answer().body == b"abcd"


def test_trailers_without_more_trailers_in_one_message():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"whole"})
        await send({"type": "http.response.trailers", "headers": [(b"x-t", b"v")]})

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/", b"TE: trailers\r\n"))
        c.read_until(b"x-t: v\r\n\r\n")
        first = c.answer()
        assert first.header("transfer-encoding") == b"chunked" and first.body == b"whole"


@pytest.mark.parametrize("request_", [get("/", version=b"1.0"), get("/", method=b"HEAD"),
                                      get("/", b"X-Length: 4\r\n")], ids=["http10", "head", "length"])
def test_trailers_announced_where_they_cannot_be_sent_are_dropped_quietly(request_):
    """HTTP/1.0 has no chunked coding, HEAD has no body and a body with a Content-Length
    no chunks: the trailers message is still taken, as the spec says, and dropped."""
    seen = Seen()

    async def app(scope, receive, send):
        headers = [(b"content-length", b"4")] if (b"x-length", b"4") in scope["headers"] else []
        await send({"type": "http.response.start", "status": 200, "headers": headers,
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})
        try:
            await send({"type": "http.response.trailers", "headers": [(b"x-t", b"v")]})
        except Exception as exc:
            seen.put(exc)
            raise
        seen.put(None)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(request_)
        assert seen.get() is None
        if b"HEAD" in request_:
            assert c.answer(head=True).status == 200
        else:
            c.wait_closed() if b"1.0" in request_ else None
            got = c.answer()
            assert got.body == b"abcd" and got.header("transfer-encoding") is None
        assert b"x-t" not in c.data
        assert stats(server)["handler_errors"] == 0


def test_pipelined_bodies_each_reach_their_own_request():
    async def app(scope, receive, send):
        body = b""
        more = True
        while more:
            message = await receive()
            body += message["body"]
            more = message["more_body"]
        await answer(send, scope["path"].encode() + b"=" + body)

    requests = b"".join(b"POST /%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                        % (i, len(b"b%d" % i * i), b"b%d" % i * i) for i in range(20))
    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(requests)
        assert [c.answer().body for _ in range(20)] == [b"/%d=" % i + b"b%d" % i * i for i in range(20)]


def test_a_body_echoed_piece_by_piece_while_it_arrives():
    """Full duplex: the app streams back each piece as it receives it."""
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        more = True
        while more:
            message = await receive()
            more = message["more_body"]
            await send({"type": "http.response.body", "body": message["body"], "more_body": more})

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(5):
            piece = b"%d" % i * 1000
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            c.read_until(piece)  # echoed before the next piece is sent
        c.send(b"0\r\n\r\n")
        assert c.answer().body == b"".join(b"%d" % i * 1000 for i in range(5))


# ---- the application's errors ------------------------------------------------------------------

def app_names_in(caplog) -> bool:
    return any("tests:asgi_app" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_an_exception_before_start_answers_500_and_the_connection_goes_on(caplog):
    async def app(scope, receive, send):
        if scope["path"] == "/fail":
            raise ValueError("boom")
        await answer(send, b"next")

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/fail") + NEXT)
        assert c.answer().status == 500
        assert c.answer().body == b"next"
        s = stats(server)
        assert s["asgi_app_errors"] == 1 and s["handler_errors"] == 1
        assert s["asgi_invalid_messages"] == 0
    assert app_names_in(caplog)


def test_an_exception_after_start_cuts_the_connection(caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        c.wait_closed()
        with pytest.raises(Truncated):
            read_answer(c.data, eof=True)
        assert stats(server)["asgi_app_errors"] == 1
    assert app_names_in(caplog)


def test_an_exception_after_start_before_any_body_is_a_clean_500():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom")

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        assert c.answer().status == 500  # nothing was written: the start can still be undone
        assert c.answer().status == 500


def test_returning_without_an_answer_is_a_500(caplog):
    async def app(scope, receive, send):
        return None

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        assert c.answer().status == 500 and c.answer().status == 500
        assert stats(server)["asgi_app_errors"] == 2
    assert app_names_in(caplog)


START = {"type": "http.response.start", "status": 200, "headers": []}

INVALID = {
    "wrong type first": [{"type": "http.response.body", "body": b"x"}],
    "unknown type": [START, {"type": "http.response.nonsense"}],
    "not a dict": [START, ["http.response.body"]],
    "str body": [START, {"type": "http.response.body", "body": "text"}],
    "int body": [START, {"type": "http.response.body", "body": 5}],
    "status as str": [{"type": "http.response.start", "status": "200"}],
    "status 99": [{"type": "http.response.start", "status": 99}],
    "status 1000": [{"type": "http.response.start", "status": 1000}],
    "status True": [{"type": "http.response.start", "status": True}],
    "status 2**80": [{"type": "http.response.start", "status": 2 ** 80}],
    "DEL in a value": [{"type": "http.response.start", "status": 200,
                        "headers": [(b"x-a", b"1\x7f")]}],
    "empty name": [{"type": "http.response.start", "status": 200, "headers": [(b"", b"1")]}],
    "Content-Length not digits": [{"type": "http.response.start", "status": 200,
                                   "headers": [(b"content-length", b"+3")]}],
    "two Content-Lengths": [{"type": "http.response.start", "status": 200,
                             "headers": [(b"content-length", b"3"), (b"Content-Length", b"4")]}],
    "CR LF in a value": [{"type": "http.response.start", "status": 200,
                          "headers": [(b"x-a", b"1\r\nx-evil: 1")]}],
    "LF in a name": [{"type": "http.response.start", "status": 200, "headers": [(b"x\na", b"1")]}],
    "str header": [{"type": "http.response.start", "status": 200, "headers": [("x-a", "1")]}],
    "int header": [{"type": "http.response.start", "status": 200, "headers": [(b"x-a", 1)]}],
    "short whole body": [{"type": "http.response.start", "status": 200,
                          "headers": [(b"content-length", b"10")]},
                         {"type": "http.response.body", "body": b"abc"}],
    "long streamed body": [{"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"3")]},
                           {"type": "http.response.body", "body": b"ab", "more_body": True},
                           {"type": "http.response.body", "body": b"cdef"}],
    "short streamed body": [{"type": "http.response.start", "status": 200,
                             "headers": [(b"content-length", b"9")]},
                            {"type": "http.response.body", "body": b"ab", "more_body": True},
                            {"type": "http.response.body", "body": b"cd"}],
    "start twice": [START, START],
    "body after the end": [START, {"type": "http.response.body", "body": b"x"},
                           {"type": "http.response.body", "body": b"y"}],
}


@pytest.mark.parametrize("name", list(INVALID))
def test_an_invalid_message_answers_500_or_cuts_and_is_counted(name, caplog):
    async def app(scope, receive, send):
        if scope["path"] == "/next":
            await answer(send, b"next")
            return
        for message in INVALID[name]:
            await send(message)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/") + NEXT)
        c.sock.settimeout(5.0)
        try:
            first = c.answer()
        except Truncated:
            assert c.closed  # cut: nothing may follow
        else:
            assert not any(n == "x-evil" for n, _ in first.headers)
            if first.status == 200:  # the answer was complete before the invalid message
                assert name == "body after the end"
            else:
                assert first.status == 500
            if first.header("connection") == b"close":
                assert c.wait_closed() == b""  # closed as announced, nothing after
            else:
                assert c.answer().body == b"next"  # a live connection is not corrupted
        s = stats(server)
        assert s["asgi_invalid_messages"] == 1, s
        assert s["handler_errors"] == 1, s  # counted once, not again as the app's error
    assert app_names_in(caplog)


# ---- disconnects -------------------------------------------------------------------------------

def test_a_client_leaving_during_receive_gives_http_disconnect():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(await receive())  # the first piece
        seen.put(await receive())  # waits: the client goes away instead of sending more
        await answer(send)

    with serve_asgi(app) as server:
        fds = open_fds()
        c = Client(server.port)
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        assert seen.get()["body"] == b"abc"
        c.close()
        assert seen.get(timeout=2.0) == {"type": "http.disconnect"}
        assert wait_until(lambda: stats(server)["open"] == 0)
        assert wait_until(lambda: stats(server)["handlers_busy"] == 0)
        assert stats(server)["asgi_disconnects"] == 1
        assert wait_until(lambda: open_fds() == fds)


def test_an_app_that_returns_quietly_after_http_disconnect_made_no_error(caplog):
    seen = Seen()

    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass
        seen.put("returned")  # the spec's advice: stop work, answer nothing

    with serve_asgi(app) as server:
        c = Client(server.port)
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.1)
        c.close()
        assert seen.get() == "returned"
        assert wait_until(lambda: stats(server)["handlers_busy"] == 0)
        s = stats(server)
        assert s["asgi_app_errors"] == 0 and s["handler_errors"] == 0 and s["asgi_disconnects"] == 1
    assert not app_names_in(caplog)


def test_a_client_leaving_after_the_body_gives_http_disconnect():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(await receive())
        seen.put(await receive())  # the body is complete: this waits for the client to go
        await answer(send)

    with serve_asgi(app) as server:
        c = Client(server.port)
        c.send(get("/"))
        assert seen.get() == {"type": "http.request", "body": b"", "more_body": False}
        time.sleep(0.1)
        assert seen.empty()  # no disconnect while the client is there
        c.close()
        assert seen.get(timeout=2.0) == {"type": "http.disconnect"}
        assert wait_until(lambda: stats(server)["handlers_busy"] == 0)


def test_a_client_leaving_while_the_app_streams_makes_send_raise_an_oserror():
    seen = Seen()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(2000):
                await send({"type": "http.response.body", "body": b"z" * 1000, "more_body": True})
                await asyncio.sleep(0.005)
        except BaseException as exc:
            seen.put(exc)
            raise
        seen.put(None)

    with serve_asgi(app) as server:
        fds = open_fds()
        c = Client(server.port)
        c.send(get("/"))
        c.read_until(b"zzzz")
        c.close()
        exc = seen.get(timeout=5.0)
        assert isinstance(exc, OSError) and isinstance(exc, ClientDisconnected)
        assert wait_until(lambda: stats(server)["handlers_busy"] == 0)
        s = stats(server)
        assert s["open"] == 0 and s["accepted"] == s["closed"]
        assert s["asgi_app_errors"] == 0  # the client left: nothing wrong with the app
        assert wait_until(lambda: open_fds() == fds)


def test_a_receive_waiting_beside_a_streaming_send_hears_the_disconnect():
    """Starlette's StreamingResponse pattern: one task streams while another awaits
    receive() for the disconnect; it gets it when the client leaves, not before."""
    seen = Seen()
    go = threading.Event()

    async def app(scope, receive, send):
        await receive()  # the (empty) body

        async def listen():
            seen.put(await receive())

        listener = asyncio.ensure_future(listen())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await until(go)
        await asyncio.sleep(0.1)
        seen.put("still streaming" if not listener.done() else "listener ended early")
        await asyncio.wait_for(listener, 5.0)

    with serve_asgi(app) as server:
        c = Client(server.port)
        c.send(get("/"))
        c.read_until(b"first;")
        go.set()
        assert seen.get() == "still streaming"  # no disconnect while the client is there
        c.close()
        assert seen.get(timeout=2.0) == {"type": "http.disconnect"}
        assert wait_until(lambda: stats(server)["handlers_busy"] == 0)


# ---- pipelining and concurrency ----------------------------------------------------------------

def test_100_pipelined_requests_are_answered_in_order():
    async def app(scope, receive, send):
        if int(scope["path"][1:]) % 7 == 0:
            await asyncio.sleep(0.001)  # some answers come later than those after them
        await answer(send, scope["path"].encode())

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(b"".join(get(f"/{i}") for i in range(100)))
        assert [c.answer().body for _ in range(100)] == [f"/{i}".encode() for i in range(100)]


def test_a_sleeping_app_call_does_not_delay_another_connection():
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await until(release)
        await answer(send, scope["path"].encode())

    with serve_asgi(app) as server, Client(server.port) as slow, Client(server.port) as fast:
        slow.send(get("/slow"))
        time.sleep(0.05)
        fast.send(get("/fast"))
        assert fast.answer(timeout=2.0).body == b"/fast"  # while /slow still waits
        assert b"HTTP/1.1" not in slow.data
        release.set()
        assert slow.answer().body == b"/slow"


def test_connections_spread_over_two_event_loops_are_each_answered_in_order():
    async def app(scope, receive, send):
        await answer(send, scope["path"].encode())

    results: list = []

    def client(i: int) -> None:
        with Client(server.port) as c:
            c.send(b"".join(get(f"/{i}-{k}") for k in range(50)))
            results.append([c.answer().body for _ in range(50)] == [b"/%d-%d" % (i, k) for k in range(50)])

    with serve_asgi(app, runtime_threads=2) as server:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20.0)
        assert results == [True] * 8
        assert wait_until(lambda: stats(server)["open"] == 0)
        s = stats(server)
        assert s["accepted"] == s["closed"] == 8 and s["handled"] == 400


def test_send_and_receive_after_the_app_returned_fail_cleanly():
    """An app that keeps send and receive past its return (a stray background task): send()
    raises ClientDisconnected, receive() says http.disconnect; the connection goes on."""
    seen = Seen()

    async def app(scope, receive, send):
        async def later():
            await asyncio.sleep(0.05)
            try:
                await send({"type": "http.response.body", "body": b"late"})
            except Exception as exc:
                seen.put(exc)
            seen.put(await receive())

        if scope["path"] == "/stray":
            asyncio.ensure_future(later())
        await answer(send, scope["path"].encode())

    with serve_asgi(app) as server, Client(server.port) as c:
        assert c.send(get("/stray")).answer().body == b"/stray"
        assert isinstance(seen.get(), ClientDisconnected)
        assert seen.get() == {"type": "http.disconnect"}
        assert c.send(get("/after")).answer().body == b"/after"
        assert b"late" not in c.data


# ---- stop() ------------------------------------------------------------------------------------

def test_stop_with_an_app_call_sleeping_ends_within_its_timeout():
    started = Seen()

    async def app(scope, receive, send):
        started.put(True)
        await asyncio.sleep(10)
        await answer(send)

    with serve_asgi(app) as server:
        c = Client(server.port)
        try:
            c.send(get("/"))
            started.get()
            t0 = time.monotonic()
            server.stop(1.0)
            took = time.monotonic() - t0
            # 1.06 s measured; the bound leaves room for a loaded machine, not for the 10 s sleep
            assert took < 2.0, f"stop(1) took {took:.2f}s"
            s = stats(server)
            assert s["open"] == 0 and s["accepted"] == s["closed"] + s["open"] == 1
            assert s["handlers_busy"] == 0  # the sleeping call was cancelled, not left behind
            assert c.wait_closed() == b""  # cut, with no answer begun
        finally:
            c.close()


# ---- scheduling --------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
@pytest.mark.parametrize("batch", [True, False])
def test_the_asyncio_thread_and_the_event_loops_run_under_sched_batch(batch):
    import fastloop
    from fastloop.asgi import ASGIApp

    seen = Seen()

    async def app(scope, receive, send):
        seen.put(os.sched_getscheduler(0))  # the asyncio thread's own policy
        await answer(send)

    srv = fastloop.Server(ASGIApp(app, lifespan="off", batch_scheduling=batch), port=0,
                          runtime_threads=2)
    srv.start()
    try:
        assert http_get(f"http://{LOOPBACK}:{srv.port}") == b"ok"
        want = os.SCHED_BATCH if batch else os.SCHED_OTHER
        assert seen.get() == want
        loops = [t.native_id for t in srv._loop_threads]
        assert len(loops) == 2 and [os.sched_getscheduler(tid) for tid in loops] == [want] * 2
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is left alone
    finally:
        srv.stop()
