"""The two thread counts under the ecosystem's names: `threads` for the Python threads that run
handlers (gunicorn gthread's --threads), `runtime_threads` for the event loops (granian's
--runtime-threads), through Server(...), `fastloop serve` flags and FASTLOOP_* variables; the
old spelling handler_threads, taken for one release with a warning and its value applied; and
what the handler threads share, counted exactly when they run at once."""

import http.client
import logging
import signal
import sys
import threading
import warnings

import pytest
from helpers import FREE_THREADED, LOOPBACK, free_threaded_only, running_server, wait_until
from serving import ServeProcess, get

import fastloop
from fastloop.config import Config
from fastloop.serve import parse_config


def meeting_app(parties: int) -> fastloop.App:
    """GET /meet returns only once `parties` requests are in handlers at the same time (each
    answers with the name of its thread); fewer handler threads than parties never get there."""
    app = fastloop.App()
    barrier = threading.Barrier(parties, timeout=10)

    @app.get("/meet")
    def meet(request):
        barrier.wait()
        return threading.current_thread().name

    return app


def meet(port: int, n: int) -> list:
    """n GET /meet at once, each on a connection of its own: their bodies (or errors)."""
    out: list = []

    def one() -> None:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=15)
        try:
            conn.request("GET", "/meet")
            resp = conn.getresponse()
            out.append((resp.status, resp.read().decode()))
        except OSError as exc:
            out.append(("error", repr(exc)))
        finally:
            conn.close()

    clients = [threading.Thread(target=one) for _ in range(n)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(20)
    return out


def assert_met_on_handler_threads(results: list, n: int) -> None:
    assert len(results) == n and all(status == 200 for status, _ in results), results
    names = {name for _, name in results}
    assert len(names) == n and all(name.startswith("fastloop-handler-") for name in names), names


# ---- Server(...) ----------------------------------------------------------------------------

def test_server_threads_run_handlers_and_runtime_threads_are_event_loops():
    with running_server(meeting_app(3), threads=3, runtime_threads=2) as srv:
        assert (srv.threads, srv.runtime_threads) == (3, 2)
        assert_met_on_handler_threads(meet(srv.port, 3), 3)
        stats = srv.stats()
        assert (stats["threads"], stats["runtime_threads"], len(stats["workers"])) == (3, 2, 2)
        assert stats["handlers_busy"] == 3  # the pool's live threads


def test_defaults_are_four_handler_threads_and_one_event_loop():
    with running_server(meeting_app(4)) as srv:
        assert (srv.threads, srv.runtime_threads) == (4, 1)
        assert_met_on_handler_threads(meet(srv.port, 4), 4)
        assert len(srv.stats()["workers"]) == 1


def test_deprecated_handler_threads_keyword_warns_and_is_applied():
    with pytest.warns(DeprecationWarning, match=r"handler_threads.*use threads=") as caught:
        srv = fastloop.Server(meeting_app(3), host=LOOPBACK, port=0, handler_threads=3)
    assert caught[0].filename == __file__  # it points at the caller's line
    srv.start()
    try:
        assert srv.threads == 3
        assert_met_on_handler_threads(meet(srv.port, 3), 3)
        with pytest.warns(DeprecationWarning, match="use .threads"):
            assert srv.handler_threads == 3
    finally:
        srv.stop(2.0)


@pytest.mark.parametrize("kwargs", [{"handler_threads": 3, "threads": 5},
                                    {"threads": 0}, {"runtime_threads": 0}])
def test_server_refuses_conflicting_or_empty_thread_counts(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError):
            fastloop.Server(fastloop.App(), port=0, **kwargs)


def test_an_old_threads_meaning_event_loops_now_gives_handler_threads():
    # The upgrade note in docs: threads=4 used to mean 4 loops; now 4 handler threads and one
    # loop, which serves the same application (and lets a Unix socket keep reuseport's rule).
    srv = fastloop.Server(fastloop.App(), port=0, threads=4)
    assert (srv.threads, srv.runtime_threads) == (4, 1)
    Config.from_env({}, uds="x.sock", dispatch="reuseport", threads=4).validate()
    with pytest.raises(ValueError, match="runtime_threads"):
        Config.from_env({}, uds="x.sock", dispatch="reuseport", runtime_threads=2)


# ---- Config, flags, environment -------------------------------------------------------------

@pytest.mark.parametrize("argv,env,expected", [
    (["--threads", "6", "--runtime-threads", "2"], {}, (6, 2)),
    ([], {"FASTLOOP_THREADS": "6", "FASTLOOP_RUNTIME_THREADS": "2"}, (6, 2)),
    (["--threads", "5"], {"FASTLOOP_HANDLER_THREADS": "6"}, (5, 1)),  # a flag beats the env
    (["--handler-threads", "6"], {"FASTLOOP_THREADS": "5"}, (6, 1)),
    ([], {}, (4, 1)),
])
def test_flags_and_environment_set_both_counts(argv, env, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # flags and env log instead
        _, config = parse_config(["m:app", *argv], env)
    kw = config.server_kwargs()
    assert (kw["threads"], kw["runtime_threads"]) == expected
    assert "handler_threads" not in kw


@pytest.mark.parametrize("argv,env,label", [
    (["--handler-threads", "6"], {}, "--handler-threads"),
    ([], {"FASTLOOP_HANDLER_THREADS": "6"}, "FASTLOOP_HANDLER_THREADS"),
])
def test_old_flag_and_variable_log_a_warning_and_apply(argv, env, label, caplog):
    with caplog.at_level(logging.WARNING, logger="fastloop"):
        _, config = parse_config(["m:app", *argv], env)
    assert config.threads == 6 and config.runtime_threads == 1
    assert any(f"{label} is deprecated" in r.getMessage() for r in caplog.records), caplog.text


def test_old_keyword_of_config_and_run_raises_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="handler_threads is deprecated") as caught:
        config = Config.from_env({}, handler_threads=6)
    assert config.threads == 6 and caught[0].filename == __file__


@pytest.mark.parametrize("argv,env", [
    (["--threads", "5", "--handler-threads", "6"], {}),
    ([], {"FASTLOOP_THREADS": "5", "FASTLOOP_HANDLER_THREADS": "6"}),
    ([], {"FASTLOOP_HANDLER_THREADS": "many"}),
    (["--handler-threads", "0"], {}),
])
def test_old_spelling_conflicts_and_bad_values_exit_with_usage(argv, env, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["m:app", *argv], env)
    assert exc.value.code == 2 and "usage:" in capsys.readouterr().err


# ---- `fastloop serve`, end to end -----------------------------------------------------------

@pytest.mark.parametrize("argv,env,counts,deprecated", [
    (["--threads", "3", "--runtime-threads", "2"], {}, "3 2", None),
    ([], {"FASTLOOP_THREADS": "3", "FASTLOOP_RUNTIME_THREADS": "2"}, "3 2", None),
    (["--handler-threads", "3"], {}, "3 1", "--handler-threads is deprecated"),
    ([], {"FASTLOOP_HANDLER_THREADS": "3"}, "3 1", "FASTLOOP_HANDLER_THREADS is deprecated"),
], ids=["flags", "env", "old-flag", "old-env"])
def test_serve_runs_the_threads_it_was_told(argv, env, counts, deprecated):
    with ServeProcess(["serve_apps:app", "--port", "0", *argv], env=env) as srv:
        # "HANDLERS LOOPS", counted by thread name inside the serving process.
        assert get(srv.url, "/threads").decode() == counts
        handlers, loops = counts.split()
        assert f"{loops} event loop(s), {handlers} handler thread(s)" in srv.log()
        if deprecated:
            assert deprecated in srv.log()
        else:
            assert "deprecated" not in srv.log()
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0


# ---- what handler threads share --------------------------------------------------------------

def test_handled_counts_every_request_of_many_handler_threads_at_once():
    # Eight handler threads add to one counter at once; without the GIL (free-threaded
    # CPython) a plain += would lose some of them, the atomic add none.
    app = fastloop.App()

    @app.get("/n")
    def n(request):
        return "n"

    per_client, clients = 150, 8
    with running_server(app, threads=8) as srv:
        def client() -> None:
            conn = http.client.HTTPConnection(LOOPBACK, srv.port, timeout=10)
            for _ in range(per_client):
                conn.request("GET", "/n")
                assert conn.getresponse().read() == b"n"
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # A thread counts its request just after the answer went out: wait for the last.
        total = per_client * clients
        assert wait_until(lambda: srv.stats()["handled"] == total, 5), srv.stats()["handled"]
        assert srv.stats()["handler_errors"] == 0


@free_threaded_only
def test_importing_the_core_keeps_the_gil_off():
    # A module not declared free-threading compatible turns the GIL back on when imported.
    import fastloop._core  # noqa: F401
    assert FREE_THREADED and not sys._is_gil_enabled()
