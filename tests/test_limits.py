"""Resource limits over real sockets: limit_concurrency and slowloris clients."""

import logging
import selectors
import socket
import time

from helpers import raw_request, running_server, wait_until

import fastloop

OK = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def hello_app():
    app = fastloop.App()
    app.static("/", b"Hello")
    return app


def test_limit_concurrency_answers_503_beyond_it_and_recovers():
    with running_server(hello_app(), runtime_threads=2, dispatch="acceptor", limit_concurrency=4) as srv:
        held = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(OK)
            assert s.recv(4096).endswith(b"Hello")
            held.append(s)
        over = raw_request(srv.port, OK)
        assert over.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in over
        held.pop().close()
        assert wait_until(lambda: srv.stats()["open"] == 3)
        assert raw_request(srv.port,
                           b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").endswith(b"Hello")
        for s in held:
            s.close()
        assert wait_until(lambda: srv.stats()["open"] == 0)
        stats = srv.stats()
    assert stats["rejected"] == {"503": 1}
    assert stats["accepted"] == 6 == stats["closed"]


def test_slowloris_clients_do_not_delay_others_and_are_closed_at_the_timeout():
    count, timeout = 500, 1.5
    with running_server(hello_app(), timeouts={"header": timeout}) as srv:
        sel = selectors.DefaultSelector()
        slow = []
        try:
            for _ in range(count):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", srv.port))
                slow.append(s)
            time.sleep(0.2)
            head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
            started = time.monotonic()
            sent = 0
            served_in = None
            while time.monotonic() - started < timeout + 1.5:
                for s in slow:  # one more header byte from each, twice a second
                    try:
                        s.send(head[sent:sent + 1])
                    except OSError:
                        pass
                sent += 1
                if served_in is None:
                    t0 = time.monotonic()
                    assert raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                       timeout=2.0).endswith(b"Hello")
                    served_in = time.monotonic() - t0
                time.sleep(0.5)
            assert served_in is not None and served_in < 1.0  # served, not queued behind them
            assert wait_until(lambda: srv.stats()["timeouts"].get("header") == count,
                              timeout=3.0), srv.stats()
            for s in slow:
                sel.register(s, selectors.EVENT_READ)
            closed = 0
            deadline = time.monotonic() + 3
            while closed < count and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    data = b""
                    try:
                        while True:
                            chunk = key.fileobj.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        pass
                    sel.unregister(key.fileobj)
                    closed += 1
            assert closed == count
        finally:
            sel.close()
            for s in slow:
                s.close()
        stats = srv.stats()
        assert stats["open"] == 0 and stats["accepted"] == count + 1


def test_rejections_and_timeouts_are_logged_at_debug_level(caplog):
    caplog.set_level(logging.DEBUG, logger="fastloop")
    with running_server(hello_app(), timeouts={"idle": 0.2}) as srv:
        assert raw_request(srv.port, b"GET / HTTP/1.1\r\nHost : t\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(OK)
            assert s.recv(4096).endswith(b"Hello")
            assert s.recv(4096) == b""  # the idle timeout closed it
        assert wait_until(lambda: "idle timeout" in caplog.text, timeout=2.0)
    assert "rejected a request: 400" in caplog.text


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_does_not_read_cannot_grow_server_memory():
    app = hello_app()

    @app.route("/mb")
    def megabyte(request):
        return b"m" * (1 << 20)

    count = 200  # 200 MiB of answers asked for, none read for a while
    with running_server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            before = rss_bytes()
            s.sendall(b"GET /mb HTTP/1.1\r\nHost: t\r\n\r\n" * count)
            time.sleep(1.0)
            grown = rss_bytes() - before
            assert grown < 48 << 20, f"server buffered {grown >> 20} MiB for one client"
            assert srv.stats()["requests"] < count  # it stopped running handlers
            f = s.makefile("rb")
            for _ in range(count):  # and once the client reads, every answer comes, in order
                status = f.readline()
                assert status.startswith(b"HTTP/1.1 200 "), status
                length = None
                while (line := f.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                assert length == 1 << 20 and f.read(length) == b"m" * length
        # counted once its answer is queued: the client may read it a moment before
        assert wait_until(lambda: srv.stats()["requests"] == count, timeout=2.0)


def test_a_client_that_stops_reading_is_closed_at_the_write_timeout():
    app = hello_app()

    @app.route("/mb")
    def megabyte(request):
        return b"m" * (8 << 20)

    with running_server(app, timeouts={"write": 0.5}) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /mb HTTP/1.1\r\nHost: t\r\n\r\n")
            assert wait_until(lambda: srv.stats()["timeouts"].get("write") == 1, timeout=3.0)
            assert wait_until(lambda: srv.stats()["open"] == 0)
        assert raw_request(srv.port,
                           b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").endswith(b"Hello")
