"""`fastloop serve module:app` and fastloop.run(app, **settings): serve an application.

APP is a fastloop App or a WSGI callable (detected, or named with --interface), found as
"module:attribute" (the attribute may be dotted: "pkg.web:site.wsgi"), or, with --factory,
a callable returning one. Each flag's default can also be set in the environment, as
FASTLOOP_<FLAG> (FASTLOOP_PORT=9000, FASTLOOP_ACCESS_LOG=1).

With --workers 1 (the default) and no --limit-max-requests, the server runs in this process.
Otherwise a supervisor pre-forks the workers; see fastloop.supervisor.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import logging
import os
import sys
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

from . import POLLER
from ._access import AccessLogApp
from .app import App
from .config import ENV_PREFIX, Config, setting_type
from .metrics import serve_server_metrics
from .proxy import FrontApp, ProxyHeaders
from .server import Server
from .supervisor import Supervisor, inherited_socket, listener_sets, serve_process
from .wsgi import WSGIApp

__all__ = ["main", "run", "serve", "load_app", "as_app", "build_parser", "parse_config", "AppLoadError"]

log = logging.getLogger("fastloop")


class AppLoadError(Exception):
    """APP could not be imported, found, built or recognised."""


def build_parser() -> argparse.ArgumentParser:
    """The `fastloop serve` parser: one flag per Config field, none with a default of its own
    (an absent flag leaves the setting to FASTLOOP_* or Config's default)."""
    parser = argparse.ArgumentParser(
        prog="fastloop serve", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", metavar="APP", help='the application, as "module:attribute"')
    for f in dataclasses.fields(Config):
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        default = "none" if f.default is None else str(f.default).lower() \
            if isinstance(f.default, bool) else f.default
        help_ = f"{meta['help']} (default: {default}; env {ENV_PREFIX}{f.name.upper()})"
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
                                choices=meta["choices"], help=help_)
    return parser


def parse_config(argv: Optional[List[str]] = None,
                 environ: Optional[Mapping[str, str]] = None) -> Tuple[str, Config]:
    """(APP, Config) from `fastloop serve` arguments and FASTLOOP_* variables. Exits with
    status 2 and a usage message on a bad flag or value, as argparse does."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k != "app"}
    try:
        return args.app, Config.from_env(environ, **given)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # not reached: parser.error exits


def main(argv: Optional[List[str]] = None) -> int:
    """`fastloop serve`: returns the exit status (0 after a graceful stop)."""
    spec, config = parse_config(argv)
    setup_logging(config)
    # As `python -m` does: the current directory holds the application's modules.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if _supervised(config):
            load_app(spec, config)  # fail fast here; each worker imports it again after fork
        return serve(lambda: load_app(spec, config), config)
    except AppLoadError as exc:
        log.error("fastloop: %s", exc)
        return 1
    except KeyboardInterrupt:  # a forced stop left a handler running: exit anyway
        return 1


def run(app: Union[App, Callable, str], **settings: Any) -> None:
    """Serves app until SIGTERM or SIGINT, then stops gracefully. app is a fastloop App, a
    WSGI callable or a "module:attribute" string; settings are fastloop.Config's fields
    (host, port, workers, threads, limit_max_requests, ...), their defaults read from
    FASTLOOP_* environment variables. Signals are handled only from the main thread."""
    config = Config.from_env(**settings)
    setup_logging(config)
    if isinstance(app, str):
        spec = app
        status = serve(lambda: load_app(spec, config), config)
    else:
        ready = as_app(app, config)  # checked here, so errors raise in the caller
        status = serve(lambda: ready, config)
    if status:
        raise SystemExit(status)


def serve(load: Callable[[], App], config: Config) -> int:
    """Serves load()'s App per config: in this process, or under a Supervisor."""
    if _supervised(config):
        sets, url = listener_sets(config, config.workers)
        return Supervisor(load, config, sets, url).run()
    app = load()
    kwargs = config.server_kwargs()
    if config.fd is not None:
        kwargs["sockets"] = [inherited_socket(config.fd)]
    server = Server(app, **kwargs)
    exporter = None
    if config.metrics:
        exporter = serve_server_metrics(server, config.metrics_address, config.metrics_port)
        log.info("fastloop: metrics on %s", exporter.url)
    try:
        return serve_process_announced(server, config)
    finally:
        if exporter is not None:
            exporter.close()


def serve_process_announced(server: Server, config: Config) -> int:
    """serve_process, with the line that says where the server listens once it does."""
    original_start = server.start

    def start() -> None:
        original_start()
        where = f"fd:{config.fd}" if config.fd is not None else server.url
        log.info("fastloop: listening on %s (%s, %d thread(s), %s dispatch, pid %d)",
                 where, POLLER, server.threads, server.dispatch, os.getpid())

    server.start = start  # type: ignore[method-assign]
    return serve_process(server, config)


def _supervised(config: Config) -> bool:
    return config.workers > 1 or config.limit_max_requests is not None


def load_app(spec: str, config: Config) -> App:
    """Imports "module:attribute", calls it if config.factory, and returns it as an App."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f'APP must look like "module:attribute", not {spec!r}')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name:
            raise AppLoadError(f"could not import module {module_name!r}") from exc
        raise  # the module exists and failed to import something: show the real error
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if config.factory:
        if not callable(obj):
            raise AppLoadError(f"{spec} is not callable, so it cannot be a --factory")
        obj = obj()
    return as_app(obj, config)


def as_app(obj: Any, config: Config) -> App:
    """obj as the App to serve: a fastloop App as it is, a WSGI callable wrapped in WSGIApp
    (per config.interface), with the access log around it if config.access_log, and proxy
    headers and the root path applied (fastloop.proxy.FrontApp) if configured."""
    interface = config.interface
    if interface == "auto":
        if isinstance(obj, App):
            interface = "fastloop"
        elif callable(obj):
            call = obj if inspect.isroutine(obj) else getattr(obj, "__call__", None)
            if inspect.iscoroutinefunction(call):
                raise AppLoadError("this looks like an ASGI application (a coroutine "
                                   "function); fastloop serves fastloop Apps and WSGI")
            interface = "wsgi"
        else:
            raise AppLoadError(f"a {type(obj).__name__} is neither a fastloop App nor a WSGI "
                               "callable")
    if interface == "fastloop":
        if not isinstance(obj, App):
            raise AppLoadError(f"--interface fastloop needs a fastloop.App, not a "
                               f"{type(obj).__name__}")
        app = obj
    else:
        if not callable(obj):
            raise AppLoadError(f"--interface wsgi needs a callable, not a {type(obj).__name__}")
        app = WSGIApp(obj, multithread=config.threads > 1, multiprocess=_supervised(config))
    app = AccessLogApp(app) if config.access_log else app
    if config.proxy_headers or config.root_path:
        # Outermost, so the access log (and everything else) sees the forwarded client.
        proxy = ProxyHeaders(config.forwarded_allow_ips) if config.proxy_headers else None
        app = FrontApp(app, proxy, config.root_path or "")
    return app


def setup_logging(config: Config) -> None:
    """The error log at config.log_level, and the access log at INFO when enabled, both to
    stderr unless the program has configured logging itself (a handler on the root logger)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z"))
        root.addHandler(handler)
    logging.getLogger("fastloop").setLevel(config.log_level.upper())
    access = logging.getLogger("fastloop.access")
    access.setLevel(logging.INFO if config.access_log else logging.CRITICAL + 1)
