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
    with running_server(hello_app(), threads=2, dispatch="acceptor", limit_concurrency=4) as srv:
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
        assert raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").endswith(b"Hello")
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
            assert wait_until(lambda: srv.stats()["timeouts"].get("header") == count, timeout=3.0), srv.stats()
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
