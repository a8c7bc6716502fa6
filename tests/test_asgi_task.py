"""The task each HTTP call runs on (core/asgi_task.pyx, not an asyncio.Task): what the
libraries applications use ask of the current task still works, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading

import pytest
from asgi_kit import Client, Seen, get, serve_asgi

REQUEST_VAR: contextvars.ContextVar = contextvars.ContextVar("request_var", default="unset")


async def answer(send, body: bytes = b"ok", status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_the_app_runs_in_a_current_task_with_the_task_api():
    seen = Seen()

    async def app(scope, receive, send):
        task = asyncio.current_task()
        seen.put((task is not None, task.done(), task.cancelled(), task.cancelling(),
                  task.get_loop() is asyncio.get_running_loop(), task.get_name()))
        await asyncio.sleep(0)  # a bare yield: the next step comes from the loop
        await asyncio.sleep(0.01)  # a future: the task waits on it
        seen.put(asyncio.current_task() is task)
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/"))
        assert c.answer().status == 200
        current, done, cancelled, cancelling, same_loop, name = seen.get()
        assert current and not done and not cancelled and cancelling == 0 and same_loop
        assert name == "fastloop-asgi"
        assert seen.get() is True


def test_sniffio_and_anyio_see_asyncio():
    sniffio = pytest.importorskip("sniffio")
    anyio = pytest.importorskip("anyio")
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(sniffio.current_async_library())
        with anyio.move_on_after(0.01) as scope_:
            await anyio.sleep(5)  # cancelled by the scope: task.cancel(), then uncancel()
        seen.put((scope_.cancelled_caught, asyncio.current_task().cancelling()))
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/"))
        assert c.answer().status == 200
        assert seen.get() == "asyncio"
        caught, cancelling = seen.get()
        assert caught
        if sys.version_info >= (3, 11):  # (anyio uncancels only where asyncio's Task can)
            assert cancelling == 0


def test_asyncio_timeout_cancels_and_uncancels_the_task():
    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is 3.11+")
    seen = Seen()

    async def app(scope, receive, send):
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            seen.put(("timeout", asyncio.current_task().cancelling()))
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/"))
        assert c.answer().status == 200
        assert seen.get() == ("timeout", 0)


def test_each_request_has_its_own_context():
    seen = Seen()

    async def app(scope, receive, send):
        seen.put(REQUEST_VAR.get())
        REQUEST_VAR.set(scope["path"])
        await asyncio.sleep(0)
        seen.put(REQUEST_VAR.get())
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        for path in ("/a", "/b"):
            c.send(get(path))
            assert c.answer().status == 200
            assert seen.get() == "unset"  # nothing set by the request before
            assert seen.get() == path


def test_anyio_worker_threads_outlive_the_request_that_started_them():
    # anyio ties its worker threads to the loop's root task; were that the request's task,
    # every request would start a thread and stop it when it ends.
    anyio = pytest.importorskip("anyio")
    threads = []

    async def app(scope, receive, send):
        threads.append(await anyio.to_thread.run_sync(threading.current_thread))
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        for _ in range(4):
            c.send(get("/"))
            assert c.answer().status == 200
    assert len(threads) == 4
    assert len(set(threads)) == 1, threads


def test_stop_cancels_a_call_that_waits():
    seen = Seen()
    entered = threading.Event()

    async def app(scope, receive, send):
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.put("cancelled")
            raise

    with serve_asgi(app, stop_timeout=0.2) as server:
        c = Client(server.port)
        c.send(get("/"))
        assert entered.wait(5)
    assert seen.get() == "cancelled"
    c.close()


class _BadYield:
    def __await__(self):
        yield 42  # neither a future nor a bare yield: asyncio's tasks throw RuntimeError back


def test_a_bad_yield_is_thrown_back_into_the_app_as_a_task_would():
    seen = Seen()

    async def app(scope, receive, send):
        try:
            await _BadYield()
        except RuntimeError as exc:
            seen.put(str(exc))
        await answer(send)

    with serve_asgi(app) as server, Client(server.port) as c:
        c.send(get("/"))
        assert c.answer().status == 200
        assert "bad yield" in seen.get()


def test_an_app_that_cancels_itself_answers_500_and_the_server_goes_on():
    async def app(scope, receive, send):
        if scope["path"] == "/cancel":
            asyncio.current_task().cancel()
            await asyncio.sleep(0)  # the cancellation lands here
        await answer(send)

    with serve_asgi(app) as server:
        with Client(server.port) as c:
            c.send(get("/cancel"))
            assert c.answer().status == 500
        with Client(server.port) as c:
            c.send(get("/"))
            assert c.answer().status == 200
