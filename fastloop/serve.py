"""`fastloop serve module:app` and fastloop.run(app, **settings): serve an application.

APP is a fastloop App, an ASGI or a WSGI callable (detected, or named with --interface), found as
"module:attribute" (the attribute may be dotted: "pkg.web:site.wsgi"), or, with --factory,
a callable returning one. Each flag's default can also be set in the environment, as
FASTLOOP_<FLAG> (FASTLOOP_PORT=9000, FASTLOOP_ACCESS_LOG=1).

With --workers 1 (the default) and no --limit-max-requests, the server runs in this process.
Otherwise a supervisor pre-forks the workers; see fastloop.supervisor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import logging.config
import logging.handlers
import os
import sys
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

from . import POLLER, __version__
from .app import App
from .config import ENV_PREFIX, RENAMED, REPEATABLE, Config, rename_deprecated, setting_type
from .listen import STARTUP_FAILURE, Listeners, StartupError, listeners_for
from .asgi import LifespanFailed
from .loader import AppLoadError, as_app, load_app
from .metrics import bind_metrics, serve_server_metrics
from .process import WorkerLink, run_until_signal
from .reload import Reloader
from .server import Server
from .supervisor import Supervisor

__all__ = ["main", "run", "serve", "load_app", "as_app", "build_parser", "parse_config",
           "AppLoadError", "setup_logging"]

log = logging.getLogger("fastloop")


def build_parser() -> argparse.ArgumentParser:
    """The `fastloop serve` parser: one flag per Config field, none with a default of its own
    (an absent flag leaves the setting to FASTLOOP_* or Config's default)."""
    parser = argparse.ArgumentParser(
        prog="fastloop serve", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", metavar="APP", help='the application, as "module:attribute"')
    parser.add_argument("--version", action="version", version=f"fastloop {__version__}")
    for f in dataclasses.fields(Config):
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        default = "none" if f.default is None else str(f.default).lower() \
            if isinstance(f.default, bool) else f.default
        help_ = f"{meta['help']} (default: {default}; env {ENV_PREFIX}{f.name.upper()})"
        help_ = help_.replace("%", "%%")  # argparse %-formats help (the access-log format)
        names = [meta["short"], flag] if meta["short"] else [flag]
        t = setting_type(f)
        if t is bool:
            if f.name == "factory":
                parser.add_argument(*names, dest=f.name, action="store_const", const=True,
                                    default=None, help=help_)
            else:
                parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                    default=None, help=help_)
        else:
            parser.add_argument(*names, dest=f.name, type=t, default=None, metavar=meta["metavar"],
                                choices=meta["choices"], help=help_,
                                action="append" if f.name in REPEATABLE else "store")
    for old, new in RENAMED.items():  # taken for one release, with a warning (parse_config)
        parser.add_argument("--" + old.replace("_", "-"), dest=old, default=None,
                            type=setting_type(next(f for f in dataclasses.fields(Config)
                                                   if f.name == new)),
                            metavar="N", help=f"deprecated: the old spelling of "
                            f"--{new.replace('_', '-')}")
    return parser


def parse_config(argv: Optional[List[str]] = None,
                 environ: Optional[Mapping[str, str]] = None) -> Tuple[str, Config]:
    """(APP, Config) from `fastloop serve` arguments and FASTLOOP_* variables. Exits with
    status 2 and a usage message on a bad flag or value, as argparse does."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {k: ",".join(v) if isinstance(v, list) else v for k, v in vars(args).items()
             if v is not None and k != "app" and k not in RENAMED}
    try:
        for old, new in RENAMED.items():
            if getattr(args, old) is not None:
                rename_deprecated(given, {old: getattr(args, old)}, "--" + old.replace("_", "-"),
                                  "--" + new.replace("_", "-"))
        return args.app, Config.from_env(environ, **given)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # not reached: parser.error exits


def main(argv: Optional[List[str]] = None) -> int:
    """`fastloop serve`: returns the exit status (0 after a graceful stop, 1 when APP cannot
    be loaded or a stop was forced, 3 when the server cannot start listening)."""
    spec, config = parse_config(argv)
    # As `python -m` does: the current directory holds the application's modules.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return serve(lambda: load_app(spec, config), config)
    except AppLoadError as exc:
        print(f"fastloop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a forced stop left a handler running: exit anyway
        return 1


def run(app: Union[App, Callable, str], **settings: Any) -> None:
    """Serves app until SIGTERM or SIGINT, then stops gracefully. app is a fastloop App, a
    WSGI callable or a "module:attribute" string; settings are fastloop.Config's fields
    (host, port, workers, threads, runtime_threads, limit_max_requests, ...), their defaults read from
    FASTLOOP_* environment variables. Signals are handled only from the main thread.
    Raises SystemExit with serve()'s status when it is not 0."""
    for old, new in RENAMED.items():
        if old in settings:  # here, so that the warning points at run()'s caller
            rename_deprecated(settings, {old: settings.pop(old)}, old, new, stacklevel=2)
    config = Config.from_env(**settings)
    if isinstance(app, str):
        spec = app
        status = serve(lambda: load_app(spec, config), config)
    else:
        if config.reload:
            raise ValueError("reload restarts by importing the application anew: give it as "
                             '"module:attribute"')
        ready = as_app(app, config)  # checked here, so errors raise in the caller
        status = serve(lambda: ready, config)
    if status:
        raise SystemExit(status)


def serve(load: Callable[[], App], config: Config) -> int:
    """Binds per config, then serves load()'s App in this process, under a Supervisor, or
    under a Reloader. Returns the exit status; a listening socket that cannot be had is one
    line on stderr and STARTUP_FAILURE. AppLoadError from load() propagates (in-process and
    with --preload)."""
    if config.log_config:
        try:
            configure_logging_from_file(config.log_config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as exc:
            # What dictConfig and fileConfig raise for a file they cannot use.
            print(f"fastloop: --log-config {config.log_config}: {exc}", file=sys.stderr)
            return 1
    try:
        listeners = listeners_for(config, config.workers if config.supervised() else 1)
    except StartupError as exc:
        print(f"fastloop: {exc}", file=sys.stderr)
        return STARTUP_FAILURE
    if config.metrics:
        try:
            listeners.metrics = bind_metrics(config.metrics_address, config.metrics_port)
        except StartupError as exc:
            listeners.close()
            print(f"fastloop: {exc}", file=sys.stderr)
            return STARTUP_FAILURE
    try:
        if config.reload:
            setup_logging(config)  # the reloader's own lines: it never imports the app

            def serve_child(link: WorkerLink) -> int:
                try:
                    return serve_here(load, config, listeners, link)
                except AppLoadError as exc:
                    print(f"fastloop: {exc}", file=sys.stderr)
                    return 1

            return Reloader(serve_child, Config.paths(config.reload_dir),
                            Config.paths(config.reload_include),
                            Config.paths(config.reload_exclude),
                            config.timeout_graceful_shutdown).run()
        if config.supervised():
            if config.preload:
                preloaded = load()
                load = lambda: preloaded  # noqa: E731
            setup_logging(config)  # the supervisor's own lines: before any fork
            return Supervisor(load, config, listeners).run()
        return serve_here(load, config, listeners)
    finally:
        listeners.close()
        if listeners.metrics is not None:
            listeners.metrics.close()


def serve_here(load: Callable[[], App], config: Config, listeners: Listeners,
               link: Optional[WorkerLink] = None) -> int:
    """Imports the application, then serves it in this process on listeners' first slot
    until a signal says stop (linked to a reloader if link is given), with its metrics
    listener if config.metrics."""
    app = load()
    setup_logging(config)  # after the application configured logging, if it does
    server = Server(app, sockets=list(listeners.sets[0]), **config.server_kwargs())

    def announce() -> None:
        runner = server.app_runner
        python = (f"ASGI on {runner.loop_name}" if runner is not None
                  else f"{server.threads} handler thread(s)")
        log.info("fastloop: listening on %s (%s, %d event loop(s), %s, %s dispatch, pid %d)",
                 listeners.url, POLLER, server.runtime_threads, python, server.dispatch,
                 os.getpid())

    # --metrics: one server process serves its own counters (a supervisor serves its
    # workers', fastloop.metrics); every in-process path (alone, under --reload) comes here.
    exporter = None
    if listeners.metrics is not None:
        exporter = serve_server_metrics(server, listeners.metrics)
        log.info("fastloop: metrics on %s", exporter.url)
    try:
        return run_until_signal(server, config.timeout_graceful_shutdown, started=announce,
                                link=link)
    except LifespanFailed as exc:
        print(f"fastloop: {exc}", file=sys.stderr)
        return STARTUP_FAILURE
    finally:
        if exporter is not None:
            exporter.close()


def configure_logging_from_file(path: str) -> None:
    """--log-config: a .json file is a logging.config.dictConfig dictionary, anything else an
    INI file for fileConfig. Loggers that exist already (fastloop's) stay enabled."""
    if not os.path.isfile(path):  # fileConfig would read nothing and fail on a missing key
        raise FileNotFoundError("no such file")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        spec.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(spec)
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)


def setup_logging(config: Config) -> None:
    """fastloop's own logs ("fastloop", "fastloop.access"): nothing with --log-config, which
    set everything. Otherwise their levels, and, unless the program or the application has
    configured logging (a handler on the root logger, or on "fastloop"), a handler of their
    own to stderr. The root logger is never touched: an application's logging.basicConfig()
    or Django's LOGGING work as they would alone."""
    if config.log_config:
        return
    ours = logging.getLogger("fastloop")
    if not ours.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z"))
        ours.addHandler(handler)
        ours.propagate = False  # an application that configures the root logger later
    ours.setLevel(config.log_level.upper())
    access = logging.getLogger("fastloop.access")
    access.setLevel(logging.INFO if config.access_log else logging.CRITICAL + 1)
    if config.access_log and not access.handlers:
        # A handler of its own, message only: the line carries its one timestamp (%(t)s),
        # and --access-log-file sends it apart from the error log.
        path = config.access_log_file
        out = logging.StreamHandler(sys.stderr) if path == "-" else \
            logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        out.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(out)
        access.propagate = False
