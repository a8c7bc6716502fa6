"""fastloop configures no logging before the application is imported, and never the root
logger: an application's logging.basicConfig() and a Django-style dictConfig keep their
format and print each line once, alone or in workers; --log-config FILE (JSON dictConfig or
INI) sets everything, fastloop's own lines included."""

import json
import os
import signal

import pytest
from helpers import env_importing_this_fastloop
from serving import ServeProcess, get

BASIC = '''
import logging
import fastloop
logging.basicConfig(level=logging.INFO, format="APP %(message)s")
logging.getLogger("basicapp").info("imported")
app = fastloop.App()

@app.get("/")
def index(request):
    logging.getLogger("basicapp").info("handled %s", request.path)
    return "ok"
'''

# As Django does with settings.LOGGING: a handler on the framework's logger, which also
# propagates to the root logger. A root handler added by the server would print it twice.
DJANGOISH = '''
import logging, logging.config
import fastloop
logging.config.dictConfig({
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"f": {"format": "DJ %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "f"}},
    "loggers": {"djangoish": {"handlers": ["console"], "level": "INFO"}},
})
app = fastloop.App()

@app.get("/")
def index(request):
    logging.getLogger("djangoish.request").warning("Not Found: %s", request.path)
    return "ok"
'''


def app_env(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(source)
    env = env_importing_this_fastloop()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return env


def lines_with(srv, text):
    return [line for line in srv.lines if text in line]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_apps_basic_config_keeps_its_format_and_prints_once(tmp_path, workers):
    env = app_env(tmp_path, "basicapp", BASIC)
    args = ["basicapp:app", "--port", "0", "-w", workers]
    with ServeProcess(args, env=env, ready_workers=int(workers) if workers != "1" else 0) as srv:
        assert get(srv.url, "/") == b"ok"
        srv.wait_for("handled /")
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    # Imported once per process that serves it (the supervisor does not import it).
    assert lines_with(srv, "imported") == ["APP imported"] * int(workers)
    assert lines_with(srv, "handled /") == ["APP handled /"]
    assert lines_with(srv, "fastloop: stopping (SIGTERM)")  # fastloop's own lines still show


def test_a_django_style_logging_config_prints_once(tmp_path):
    env = app_env(tmp_path, "djangoish", DJANGOISH)
    with ServeProcess(["djangoish:app", "--port", "0"], env=env) as srv:
        assert get(srv.url, "/") == b"ok"
        srv.wait_for("Not Found: /")
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    assert lines_with(srv, "Not Found: /") == ["DJ WARNING Not Found: /"]


def test_log_config_json_sets_everything(tmp_path):
    config = {
        "version": 1,
        "formatters": {"f": {"format": "CFG %(name)s %(message)s"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "f"}},
        "loggers": {"fastloop": {"handlers": ["err"], "level": "INFO", "propagate": False}},
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    with ServeProcess(["serve_apps:app", "--port", "0", "--log-config", str(path),
                       "--access-log"]) as srv:
        assert get(srv.url, "/items/4") == b"item 4"
        srv.wait_for('"GET /items/4 HTTP/1.1" 200')
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    assert lines_with(srv, "listening on")[0].startswith("CFG fastloop fastloop: listening on")
    assert lines_with(srv, "GET /items/4")[0].startswith("CFG fastloop.access ")


def test_log_config_ini(tmp_path):
    path = tmp_path / "logging.ini"
    path.write_text("""
[loggers]
keys=root,fastloop

[handlers]
keys=err

[formatters]
keys=f

[logger_root]
level=WARNING
handlers=

[logger_fastloop]
level=INFO
handlers=err
propagate=0
qualname=fastloop

[handler_err]
class=StreamHandler
formatter=f
args=(sys.stderr,)

[formatter_f]
format=INI %(levelname)s %(message)s
""")
    with ServeProcess(["serve_apps:app", "--port", "0", "-w", "2", "--log-config", str(path)],
                      ready_workers=2) as srv:
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    assert lines_with(srv, "thread(s) on")[0].startswith("INI INFO fastloop: supervisor ")
    assert all(line.startswith("INI INFO ") for line in lines_with(srv, "is accepting"))


def test_a_missing_log_config_is_one_line(tmp_path):
    from test_startup import serve
    out = serve("--log-config", str(tmp_path / "nope.json"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "nope.json" in out.stderr and len(out.stderr.strip().splitlines()) == 1
