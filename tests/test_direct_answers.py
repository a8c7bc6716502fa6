"""A handler thread sends its answer straight to the client when nothing is unsent on the
connection (fl_job_send), and hands the rest to the loop otherwise. Whatever path each byte
takes, the client sees every answer whole, in request order, and the server's books count
every byte once; a client that does not read holds up no thread."""

from __future__ import annotations

import socket
import threading
import time

from helpers import running_server, wait_until

import fastloop

H = b"Host: t\r\n"
BIG = 32 << 20  # more than the socket buffers of both ends hold


def make_app() -> fastloop.App:
    app = fastloop.App()
    app.static("/static", b"static")

    @app.get("/small")
    def small(request):
        return b"small:" + request.query.encode()

    @app.get("/big")
    def big(request):
        return b"b" * BIG  # far more than a socket takes at once

    @app.route("/upload", methods=["POST"], stream=True)
    def upload(request):
        return b"got %d" % sum(len(piece) for piece in request.stream())

    return app


def read_answers(sock: socket.socket, n: int) -> list[bytes]:
    """The bodies of the next n Content-Length answers on sock."""
    f = sock.makefile("rb")
    bodies = []
    for _ in range(n):
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 200 "), status
        length = 0
        while (line := f.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        bodies.append(f.read(length))
    return bodies


def settled_bytes_out(srv: fastloop.Server, want: int) -> int:
    wait_until(lambda: srv.stats()["bytes_out"] >= want, timeout=5)
    time.sleep(0.05)
    return srv.stats()["bytes_out"]


def test_pipelined_answers_of_both_paths_arrive_whole_and_in_order():
    with running_server(make_app()) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            # One job of three (sent by its handler as far as the socket takes them, the rest
            # by the loop), a static answer, then a job queued behind unsent output.
            reqs = [b"/small?1", b"/big", b"/small?2", b"/static", b"/small?3"]
            s.sendall(b"".join(b"GET " + p + b" HTTP/1.1\r\n" + H + b"\r\n" for p in reqs))
            time.sleep(0.3)  # the big answer fills the socket buffers before anyone reads
            bodies = read_answers(s, len(reqs))
    assert bodies == [b"small:1", b"b" * BIG, b"small:2", b"static", b"small:3"]


def test_keep_alive_answers_one_at_a_time_are_each_counted_once():
    with running_server(make_app()) as srv:
        received = 0
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            for i in range(50):
                s.sendall(b"GET /small?%d HTTP/1.1\r\n" % i + H + b"\r\n")
                head = b""
                while (line := f.readline()) != b"\r\n":
                    head += line
                body = f.read(len(b"small:%d" % i))
                assert body == b"small:%d" % i
                received += len(head) + 2 + len(body)
            assert settled_bytes_out(srv, received) == received
            assert srv.stats()["requests"] == 50


def test_a_big_bytes_answer_to_a_client_that_does_not_read_holds_up_no_thread():
    app = make_app()
    with running_server(app, threads=1) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as stalled:
            stalled.sendall(b"GET /big HTTP/1.1\r\n" + H + b"\r\n")
            time.sleep(0.3)
            # The one handler thread is free: what the socket did not take went to the loop.
            for i in range(20):
                with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as other:
                    other.sendall(b"GET /small?%d HTTP/1.1\r\n" % i + H + b"\r\n")
                    assert read_answers(other, 1) == [b"small:%d" % i]
            assert srv.stats()["bytes_out"] < BIG // 2  # the stalled answer is still unsent
            stalled.settimeout(10)
            assert read_answers(stalled, 1) == [b"b" * BIG]  # ... and all of it arrives


def test_100_continue_goes_out_before_an_answer_the_handler_sends_itself():
    with running_server(make_app()) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            f = s.makefile("rb")
            assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert f.readline() == b"\r\n"
            s.sendall(b"hello")
            assert f.readline().startswith(b"HTTP/1.1 200 ")
            while f.readline() != b"\r\n":
                pass
            assert f.read(5) == b"got 5"


def test_many_clients_at_once_each_get_their_own_answers():
    errors: list[str] = []
    with running_server(make_app()) as srv:
        def client(k: int) -> None:
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                    for i in range(30):
                        q = b"%d-%d" % (k, i)
                        s.sendall(b"GET /small?" + q + b" HTTP/1.1\r\n" + H + b"\r\n")
                        if read_answers(s, 1) != [b"small:" + q]:
                            errors.append(f"client {k} request {i}")
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert wait_until(lambda: srv.stats()["requests"] == 16 * 30, timeout=5)
