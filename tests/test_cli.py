"""`fastloop serve` and fastloop.run: flags, FASTLOOP_* defaults, loading APP, and one server
process end to end (TCP, Unix socket, inherited descriptor, access log)."""

import logging
import os
import signal
import socket
import subprocess
import sys

import pytest
import serve_apps
from helpers import env_importing_this_fastloop, running_server
from serving import HERE, ServeProcess, get

import fastloop
from fastloop.config import MAX_REQUEST_BODY, MAX_REQUEST_FIELDS, Config
from fastloop.serve import AppLoadError, as_app, build_parser, load_app, parse_config
from fastloop.asgi import ASGIApp
from fastloop.wsgi import WSGIApp

ISSUE_FLAGS = """--host --port --uds --fd -w --workers --threads --dispatch --backlog
    --timeout-keep-alive --timeout-request-header --timeout-graceful-shutdown --limit-concurrency
    --limit-request-line --limit-request-fields --limit-request-field-size --limit-request-body
    --limit-max-requests --limit-max-requests-jitter --access-log --no-access-log --log-level
    --interface --factory --uds-perms --reuse-port --no-reuse-port --preload --timeout-worker
    --reload --reload-dir --reload-include --reload-exclude --log-config --version
    --runtime-threads --handler-threads""".split()


def test_every_flag_of_the_issue_exists_and_is_explained():
    text = build_parser().format_help()
    for flag in ISSUE_FLAGS:
        assert f" {flag}" in text, flag
    for name in Config.__dataclass_fields__:  # argparse may wrap a line after "env"
        assert "FASTLOOP_" + name.upper() in text, name


def test_flags_beat_environment_which_beats_defaults():
    env = {"FASTLOOP_PORT": "9001", "FASTLOOP_WORKERS": "3", "FASTLOOP_ACCESS_LOG": "yes",
           "FASTLOOP_TIMEOUT_KEEP_ALIVE": "2.5", "FASTLOOP_DISPATCH": "acceptor"}
    spec, config = parse_config(["m:app", "--port", "9002", "--no-access-log"], env)
    assert spec == "m:app"
    assert (config.port, config.workers, config.access_log) == (9002, 3, False)
    assert (config.timeout_keep_alive, config.dispatch, config.host) == (2.5, "acceptor", "127.0.0.1")


def test_settings_map_onto_the_server():
    _, config = parse_config(["m:app", "--limit-request-line", "100", "--limit-request-fields", "20",
                              "--limit-request-field-size", "300", "--limit-request-body", "4000",
                              "--timeout-request-header", "3", "--timeout-keep-alive", "4",
                              "--limit-concurrency", "50", "--threads", "2", "--backlog", "64",
                              "--runtime-threads", "3"], {})
    kw = config.server_kwargs()
    assert kw["limits"] == {"request_line": 100, "fields": 20, "field_size": 300, "body_bytes": 4000,
                            "lenient_targets": False}
    assert kw["timeouts"] == {"header": 3.0, "idle": 4.0, "ws_ping": 20.0, "ws_pong": 20.0}
    assert (kw["limit_concurrency"], kw["threads"], kw["backlog"]) == (50, 2, 64)
    assert kw["runtime_threads"] == 3
    fastloop.Server(fastloop.App(), **kw)  # every key is one the Server takes


@pytest.mark.parametrize("argv,env", [
    (["--port", "x"], {}),
    (["--workers", "0"], {}),
    (["--dispatch", "sideways"], {}),
    (["--limit-request-fields", str(MAX_REQUEST_FIELDS + 1)], {}),
    # every limit has a documented maximum: lengths from the wire never meet an overflow
    (["--limit-request-body", str(MAX_REQUEST_BODY + 1)], {}),
    (["--limit-request-body", str(2**64 - 1)], {}),
    (["--limit-request-line", str(2**32)], {}),
    (["--limit-request-field-size", str(2**32 - 1)], {}),
    ([], {"FASTLOOP_LIMIT_REQUEST_BODY": str(2**64 - 1)}),
    (["--uds", "/tmp/x", "--fd", "3"], {}),
    ([], {"FASTLOOP_PORT": "eighty"}),
    ([], {"FASTLOOP_ACCESS_LOG": "maybe"}),
])
def test_bad_values_exit_with_usage(argv, env, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["m:app", *argv], env)
    assert exc.value.code == 2 and "usage:" in capsys.readouterr().err


def test_operations_settings_parse_from_flags_and_environment():
    env = {"FASTLOOP_UDS_PERMS": "0o640", "FASTLOOP_REUSE_PORT": "yes",
           "FASTLOOP_TIMEOUT_WORKER": "7.5", "FASTLOOP_RELOAD_EXCLUDE": "a*,b*"}
    _, config = parse_config(["m:app", "--preload", "--reload-dir", "src", "--reload-dir",
                              "lib", "--log-config", "log.json"], env)
    assert (config.uds_mode(), config.reuse_port, config.timeout_worker) == (0o640, True, 7.5)
    assert config.preload and config.log_config == "log.json"
    assert Config.paths(config.reload_dir) == ["src", "lib"]  # the flag repeats
    assert Config.paths(config.reload_exclude) == ["a*", "b*"]  # the variable lists
    assert Config(uds_perms=0o600).uds_mode() == 0o600  # an int, from Python
    assert Config().uds_mode() == 0o666 and not Config().reuse_port and not Config().preload


@pytest.mark.parametrize("argv", [["--uds-perms", "9"], ["--uds-perms", "1777"],
                                  ["--timeout-worker", "0"], ["--reload", "-w", "2"],
                                  ["--reload", "--limit-max-requests", "5"]])
def test_bad_operations_values_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["m:app", *argv], {})
    assert exc.value.code == 2 and "usage:" in capsys.readouterr().err


def test_run_refuses_reload_of_an_object():
    with pytest.raises(ValueError, match="module:attribute"):
        fastloop.run(fastloop.App(), reload=True)


@pytest.mark.parametrize("body", [2**32 - 1, 2**32, 2**32 + 1, MAX_REQUEST_BODY])
def test_body_limits_above_4_gib_are_allowed_up_to_the_maximum(body):
    _, config = parse_config(["m:app", "--limit-request-body", str(body)], {})
    assert config.server_kwargs()["limits"]["body_bytes"] == body
    fastloop.Server(fastloop.App(), **config.server_kwargs())  # the core takes it as it is


def test_lenient_targets_flag_reaches_the_limits():
    assert " --lenient-targets" in build_parser().format_help()
    _, config = parse_config(["m:app", "--lenient-targets"], {})
    assert config.limits()["lenient_targets"] is True
    _, config = parse_config(["m:app"], {"FASTLOOP_LENIENT_TARGETS": "1"})
    assert config.limits()["lenient_targets"] is True


def test_run_rejects_unknown_settings():
    with pytest.raises(TypeError, match="unknown setting"):
        fastloop.run(fastloop.App(), prot=80)


# ---- loading APP ----------------------------------------------------------------------------

def test_load_detects_the_interface():
    config = Config()
    assert load_app("serve_apps:app", config) is serve_apps.app
    wsgi = load_app("serve_apps:wsgi", config)
    assert isinstance(wsgi, WSGIApp) and wsgi.wsgi.app is serve_apps.wsgi
    made = load_app("serve_apps:make_app", Config(factory=True))
    assert isinstance(made, fastloop.App) and made is not serve_apps.app
    assert load_app("serve_apps:app", Config(interface="fastloop")) is serve_apps.app
    asgi = load_app("serve_apps:asgi", config)  # a coroutine function: ASGI
    assert isinstance(asgi, ASGIApp) and asgi.asgi_app is serve_apps.asgi
    assert asgi.name == "serve_apps:asgi"
    forced = load_app("serve_apps:wsgi", Config(interface="asgi", lifespan="off"))
    assert isinstance(forced, ASGIApp) and forced.lifespan == "off"


@pytest.mark.parametrize("spec,config,error", [
    ("serve_apps", Config(), "module:attribute"),
    ("no_such_module_here:app", Config(), "could not import"),
    ("serve_apps:nothing", Config(), "no attribute"),
    ("serve_apps:not_an_app", Config(), "neither"),
    ("serve_apps:not_an_app", Config(interface="asgi"), "needs a callable"),
    ("serve_apps:wsgi", Config(interface="fastloop"), "needs a fastloop.App"),
    ("serve_apps:not_an_app", Config(factory=True), "not callable"),
])
def test_load_errors_say_what_is_wrong(spec, config, error):
    with pytest.raises(AppLoadError, match=error):
        load_app(spec, config)


def test_access_log_wraps_the_app_and_logs_static_routes_too(caplog):
    logged = as_app(serve_apps.app, Config(access_log=True))
    assert logged is not serve_apps.app and logged._statics == {}  # C hands everything over
    caplog.set_level(logging.INFO, logger="fastloop.access")
    with running_server(logged) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"static\n")
    assert '"GET /?x=1 HTTP/1.1" 200 7 "-" "t/1"' in caplog.text


# ---- one server process, end to end ---------------------------------------------------------

def test_serve_answers_and_stops_on_sigterm():
    with ServeProcess(["serve_apps:app", "--port", "0", "--runtime-threads", "2"]) as srv:
        assert get(srv.url, "/") == b"static\n"
        assert get(srv.url, "/items/12") == b"item 12"
        assert int(get(srv.url, "/pid")) == srv.pid  # no supervisor: the server is this process
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    assert "stopping (SIGTERM)" in srv.log()


def test_serve_a_wsgi_app_with_access_log_on_a_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    with ServeProcess(["serve_apps:wsgi", "--uds", path, "--access-log"]) as srv:
        assert srv.url == f"unix:{path}"
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: tester\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"wsgi /x " in data
        srv.wait_for('"GET /x?y=1 HTTP/1.1" 200 ')
        assert '"-" "tester"' in srv.log()
        srv.signal(signal.SIGINT)
        assert srv.wait(10) == 0
    assert not os.path.exists(path)


def test_serve_an_inherited_listening_descriptor():
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with ServeProcess(["serve_apps:app", "--fd", str(fd)], pass_fds=[fd]) as srv:
            assert srv.url == f"fd:{fd}"
            assert get(f"http://127.0.0.1:{port}/", "/items/3") == b"item 3"
            srv.signal(signal.SIGTERM)
            assert srv.wait(10) == 0
    finally:
        listener.close()


def test_bad_app_exits_1_with_the_reason():
    out = subprocess.run([sys.executable, "-m", "fastloop", "serve", "serve_apps:nothing", "--port", "0"],
                         cwd=HERE, env=env_importing_this_fastloop(), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and "has no attribute 'nothing'" in out.stderr


def test_fastloop_run_from_a_program():
    code = ("import fastloop, serve_apps\n"
            "fastloop.run(serve_apps.wsgi, port=0, timeout_graceful_shutdown=1)\n")
    with ServeProcess([], command=[sys.executable, "-c", code],
                      env={"FASTLOOP_RUNTIME_THREADS": "2", "FASTLOOP_LOG_LEVEL": "info"}) as srv:
        assert get(srv.url, "/r").startswith(b"wsgi /r ")
        assert "2 event loop(s)" in srv.log()  # from FASTLOOP_RUNTIME_THREADS
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
