"""--reload: the server process restarts when a counted source file changes (and only then),
serving the new code; a broken edit leaves the reloader waiting for the next one. Runs the
polling watcher always (watchfiles hidden), and watchfiles too where it is installed."""

import importlib.util
import os
import signal
import time

import pytest
from helpers import env_importing_this_fastloop, wait_until
from serving import ServeProcess, get

MODULE = 'import fastloop\napp = fastloop.App()\napp.static("/", "{text}\\n")\n'
QUIET = 1.5  # seconds with no restart expected: several polls


def write(path, text):
    path.write_text(MODULE.format(text=text) if path.suffix == ".py" else text)
    # Another size as well as mtime: the import system's cache is keyed on both.


@pytest.fixture(params=["polling", "watchfiles"])
def watcher(request, tmp_path):
    env = env_importing_this_fastloop()
    if request.param == "polling":
        hide = tmp_path / "hide"
        hide.mkdir()
        (hide / "watchfiles.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(hide), env["PYTHONPATH"]])
    elif importlib.util.find_spec("watchfiles") is None:
        pytest.skip("watchfiles is not installed")
    return request.param, env


def served(srv):
    return get(srv.url, "/").decode().strip()


def restarts(srv):
    return srv.log().count("restarting the server process")


def test_reload_restarts_on_a_change_that_counts(tmp_path, watcher):
    name, env = watcher
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write(src / "reloaded.py", "one")
    env["PYTHONPATH"] = os.pathsep.join([str(src), env["PYTHONPATH"]])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    args = ["reloaded:app", "--port", "0", "--reload", "--reload-dir", str(src),
            "--reload-include", "*.cfg", "--reload-exclude", "skip_*.py"]
    with ServeProcess(args, env=env) as srv:
        assert f"({name})" in srv.log()
        assert served(srv) == "one"
        first = srv.worker_pids()
        assert len(first) == 1 and first[0] != srv.pid  # the reloader never serves itself

        write(src / "reloaded.py", "second")
        srv.wait_for("restarting the server process", timeout=10)
        srv.wait_for("listening on", 2)
        assert served(srv) == "second"
        assert not os.path.exists(f"/proc/{first[0]}") or \
            wait_until(lambda: not os.path.exists(f"/proc/{first[0]}"), 5)

        # Not counted: another suffix, an excluded glob, a hidden folder.
        write(src / "notes.txt", "text")
        write(src / "sub" / "skip_me.py", "x")
        (src / ".hidden").mkdir()
        write(src / ".hidden" / "h.py", "x")
        time.sleep(QUIET)
        assert restarts(srv) == 1, srv.log()

        # Counted: an included glob, and a file in a subdirectory.
        write(src / "settings.cfg", "a=1")
        srv.wait_for("restarting the server process", 2, timeout=10)
        write(src / "sub" / "helper.py", "y")
        srv.wait_for("restarting the server process", 3, timeout=10)
        srv.wait_for("listening on", 4)
        assert served(srv) == "second"

        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0


def test_a_broken_edit_waits_for_the_next_one(tmp_path, watcher):
    _, env = watcher
    write(tmp_path / "flaky.py", "ok")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    args = ["flaky:app", "--port", "0", "--reload", "--reload-dir", str(tmp_path)]
    with ServeProcess(args, env=env) as srv:
        assert served(srv) == "ok"
        (tmp_path / "flaky.py").write_text("this is not python\n")
        srv.wait_for("waiting for a change", timeout=10)
        write(tmp_path / "flaky.py", "fixed again")
        srv.wait_for("listening on", 2, timeout=10)
        assert served(srv) == "fixed again"
        srv.signal(signal.SIGINT)
        assert srv.wait(15) == 0


def test_reload_with_workers_is_refused():
    with pytest.raises(ValueError, match="--reload runs one server process"):
        from fastloop.config import Config
        Config.from_env({}, reload=True, workers=2)
