"""The ASGI lifespan (asgiref lifespan spec 2.0) with --lifespan auto|on|off as uvicorn
documents them: startup before the first request, shutdown once after the connections
drained, a failed startup ending `fastloop serve` with status 3 and one clear line."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from typing import Optional

import pytest
from asgi_kit import Client, get, serve_asgi
from helpers import env_importing_this_fastloop, wait_until
from serving import HERE, ServeProcess, get as http_get

from fastloop.asgi import LifespanFailed


def lifespan_app(events: list, startup_message: str = "lifespan.startup.complete"):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            events.append(("scope", scope["asgi"]["version"], scope["asgi"].get("spec_version")))
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "ready"
                    await send({"type": startup_message, "message": "nope"})
                    if startup_message != "lifespan.startup.complete":
                        return
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        events.append(("request", scope["state"].get("db")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_and_shutdown_run_once_and_the_state_reaches_requests(mode):
    events: list = []
    with serve_asgi(lifespan_app(events), lifespan=mode) as server:
        assert events == [("scope", "3.0", "2.0"), "lifespan.startup"]  # before any request
        with Client(server.port) as c:
            c.send(get("/") + get("/")).answer()
            c.answer()
    assert events[2:] == [("request", "ready"), ("request", "ready"), "lifespan.shutdown"]


def test_lifespan_off_never_calls_the_app_with_a_lifespan_scope():
    events: list = []
    with serve_asgi(lifespan_app(events), lifespan="off") as server, Client(server.port) as c:
        c.send(get("/")).answer()
    assert events == [("request", None)]


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_a_startup_failed_message_stops_the_server_from_starting(mode):
    events: list = []
    with pytest.raises(LifespanFailed, match="nope"):
        with serve_asgi(lifespan_app(events, "lifespan.startup.failed"), lifespan=mode):
            pass  # never reached


def test_auto_goes_on_without_lifespan_when_the_app_raises_on_it(caplog):
    import asgi_lifespan_apps
    caplog.set_level(logging.INFO, logger="fastloop")
    with serve_asgi(asgi_lifespan_apps.no_lifespan, lifespan="auto") as server, Client(server.port) as c:
        assert c.send(get("/")).answer().body == b"plain"
    assert any("does not support ASGI lifespan" in r.getMessage() for r in caplog.records)


def test_on_refuses_an_app_without_lifespan_support():
    import asgi_lifespan_apps
    with pytest.raises(LifespanFailed, match="does not support the lifespan protocol"):
        with serve_asgi(asgi_lifespan_apps.no_lifespan, lifespan="on"):
            pass


# ---- fastloop serve ----------------------------------------------------------------------------

def serve_until_exit(args: list, timeout: float = 15.0, env: Optional[dict] = None):
    """fastloop serve ARGS in a child; (exit status, stderr lines) once it ended by itself."""
    proc = subprocess.Popen([sys.executable, "-m", "fastloop", "serve", *args, "--port", "0"],
                            cwd=HERE, env={**env_importing_this_fastloop(), **(env or {})}, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("app, args, says", [
    ("asgi_lifespan_apps:failing_startup", [], "no database"),
    ("asgi_lifespan_apps:raising_startup", ["--lifespan", "on"], "the startup raised"),
    ("asgi_lifespan_apps:no_lifespan", ["--lifespan", "on"], "does not support the lifespan protocol"),
])
def test_a_failed_startup_exits_3_with_one_clear_line(app, args, says):
    status, lines = serve_until_exit([app, *args])
    assert status == 3, lines
    failures = [line for line in lines if "lifespan" in line.lower()]
    assert len(failures) == 1 and says in failures[0] and app in failures[0], lines
    assert not any("Traceback" in line for line in lines), lines


def test_lifespan_off_serves_an_app_that_would_fail_its_startup(tmp_path):
    events = tmp_path / "events"
    with ServeProcess(["asgi_lifespan_apps:raising_startup", "--port", "0", "--lifespan", "off"],
                      env={"ASGI_EVENTS": str(events)}) as srv:
        assert http_get(srv.url) == b"never"


def test_sigterm_drains_connections_then_runs_the_shutdown(tmp_path):
    events = tmp_path / "events"
    outcome: list = []
    with ServeProcess(["asgi_lifespan_apps:lifespan", "--port", "0"],
                      env={"ASGI_EVENTS": str(events)}) as srv:
        assert http_get(srv.url) == b"hello"  # the state the startup set

        def slow() -> None:
            outcome.append(http_get(srv.url, "/slow"))

        t = threading.Thread(target=slow)
        t.start()
        try:
            assert wait_until(lambda: events.exists() and "slow-begin" in events.read_text())
            srv.signal(signal.SIGTERM)
            assert srv.wait(15.0) == 0, srv.log()
        finally:
            t.join(10.0)
    assert outcome == [b"hello"]  # the request in flight was answered
    assert events.read_text().split() == ["startup", "slow-begin", "slow-end", "shutdown"]


def test_the_shutdown_is_not_sent_when_the_startup_failed(tmp_path):
    events = tmp_path / "events"
    status, _ = serve_until_exit(["asgi_lifespan_apps:failing_startup"], env={"ASGI_EVENTS": str(events)})
    assert status == 3 and events.read_text().split() == ["lifespan.startup"]
