"""The poller backend's contract (poller.h), on whichever backend this build compiled:
edge-triggered readiness, wake-ups across threads, closed descriptors. Nothing must happen
when nothing should (mio's expect_no_events)."""

import os
import socket
import threading

import pytest
from fastloop._core import HUP, POLLER, READABLE, WAKER_TOKEN, WRITABLE, Poller


@pytest.fixture
def poller():
    p = Poller()
    yield p
    p.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def expect_no_events(poller, timeout_ms=50):
    assert poller.wait(timeout_ms) == []


def readable(events, token):
    return any(t == token and m & READABLE for t, m in events)


def test_backend_is_named():
    assert POLLER in ("epoll", "kqueue")


def test_readable_edge_is_reported_once(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 7)
    poller.wait(50)  # the initial writable edge
    expect_no_events(poller)
    b.send(b"x")
    assert readable(poller.wait(1000), 7)
    expect_no_events(poller)  # data still unread, but the edge was reported: no repeat
    b.send(b"y")
    assert readable(poller.wait(1000), 7)  # new data, new edge
    assert a.recv(10) == b"xy"


def test_writable_edge_after_the_buffer_fills(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 3)
    poller.wait(50)
    with pytest.raises(BlockingIOError):
        while True:
            a.send(b"z" * 65536)
    expect_no_events(poller)
    while True:
        try:
            if not b.recv(1 << 20):
                break
        except BlockingIOError:
            break
    assert any(t == 3 and m & WRITABLE for t, m in poller.wait(1000))


def test_peer_close_is_reported_as_hup(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 5)
    poller.wait(50)
    b.close()
    events = poller.wait(1000)
    assert any(t == 5 and m & HUP and m & READABLE for t, m in events)
    assert a.recv(10) == b""


def test_tokens_are_the_callers(poller, pair):
    a, b = pair
    token = (123 << 32) | 456  # a slot index and a generation, as the workers use them
    poller.add(a.fileno(), token)
    poller.wait(50)
    b.send(b"x")
    events = poller.wait(1000)
    assert readable(events, token)
    assert {t for t, _ in events} == {token}


def test_wake_from_another_thread(poller):
    t = threading.Timer(0.05, poller.wake)
    t.start()
    events = poller.wait(2000)
    t.join()
    assert events == [(WAKER_TOKEN, READABLE)]
    poller.wake_drain()
    expect_no_events(poller)
    poller.wake()
    poller.wake()  # wake-ups coalesce: one event, not two
    assert poller.wait(1000) == [(WAKER_TOKEN, READABLE)]
    poller.wake_drain()
    expect_no_events(poller)


def test_closed_descriptor_reports_nothing(poller, pair):
    a, b = pair
    fd = a.fileno()
    poller.add(fd, 9)
    poller.wait(50)
    a.close()  # closing removes it from the poller: its peer's close makes no event here
    b.close()
    expect_no_events(poller)


def test_listener_edge_covers_many_connections(poller):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    lsock.setblocking(False)
    clients = []
    try:
        poller.add_listener(lsock.fileno(), 1)
        for _ in range(20):
            clients.append(socket.create_connection(lsock.getsockname()))
        assert readable(poller.wait(1000), 1)
        accepted = []
        while True:  # one edge for twenty connections: only draining until EAGAIN finds them all
            try:
                accepted.append(lsock.accept()[0])
            except BlockingIOError:
                break
        assert len(accepted) == 20
        expect_no_events(poller)
        for s in accepted:
            s.close()
    finally:
        for s in clients:
            s.close()
        lsock.close()


def test_poller_owns_its_descriptors_and_closes_them():
    p = Poller()
    fds = p.fds()
    assert fds and all(fd >= 0 for fd in fds)
    p.close()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
