"""Finding the application to serve: "module:attribute" imported, a factory called, a WSGI
callable wrapped, its answers observed (access log, duration histograms), and proxy headers
and the root path around that."""

from __future__ import annotations

import importlib
from typing import Any

from ._access import AccessLog, access_log_on
from ._durations import RequestDurations
from ._observe import ObservedApp
from .app import App
from .asgi import ASGIApp, is_asgi_app
from .asgi_front import ObserveMiddleware, ProxyHeadersMiddleware
from .config import Config
from .proxy import FrontApp, ProxyHeaders
from .wsgi import WSGIApp

__all__ = ["AppLoadError", "load_app", "as_app"]


class AppLoadError(Exception):
    """APP could not be imported, found, built or recognised."""


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
    return as_app(obj, config, spec)


def as_app(obj: Any, config: Config, name: str = "") -> App:
    """obj as the App to serve: a fastloop App as it is, a WSGI callable wrapped in WSGIApp
    (per config.interface); its answers observed (fastloop._observe) by the access log if
    config.access_log and the request-duration histograms if config.metrics; proxy headers
    and the root path applied (fastloop.proxy.FrontApp) if configured."""
    interface = config.interface
    if interface == "auto":
        if isinstance(obj, App):
            interface = "fastloop"
        elif is_asgi_app(obj):
            interface = "asgi"
        elif callable(obj):
            interface = "wsgi"
        else:
            raise AppLoadError(f"a {type(obj).__name__} is neither a fastloop App nor an ASGI "
                               "or WSGI callable")
    if interface == "asgi":
        return asgi_app(obj, config, name)
    if interface == "fastloop":
        if not isinstance(obj, App):
            raise AppLoadError(f"--interface fastloop needs a fastloop.App, not a "
                               f"{type(obj).__name__}")
        app = obj
    else:
        if not callable(obj):
            raise AppLoadError(f"--interface wsgi needs a callable, not a {type(obj).__name__}")
        # The handler threads run the application, so it runs concurrently when they are many.
        app = WSGIApp(obj, multithread=config.threads > 1, multiprocess=config.supervised())
    if config.access_log or config.metrics:
        # One wrapper, one hook per answer, for both: the access log takes the static routes
        # over (to log them); the duration histograms leave them to the core.
        observers: list = []
        if config.access_log:
            observers.append(AccessLog(config.access_log_format, config.access_log_json))
        if config.metrics:
            observers.append(RequestDurations())
        app = ObservedApp(app, observers, take_statics=config.access_log,
                          active=access_log_on if not config.metrics else None)
    if config.proxy_headers or config.root_path:
        # Outermost, so the access log (and everything else) sees the forwarded client.
        proxy = ProxyHeaders(config.forwarded_allow_ips) if config.proxy_headers else None
        app = FrontApp(app, proxy, config.root_path or "")
    return app


def asgi_app(obj: Any, config: Config, name: str = "") -> App:
    """obj, an ASGI application, as an ASGIApp, with the access log and trusted proxy
    headers (ASGI middleware) around it when configured; the root path goes in the scope."""
    if not callable(obj):
        raise AppLoadError(f"--interface asgi needs a callable, not a {type(obj).__name__}")
    inner = obj
    log = AccessLog(config.access_log_format, config.access_log_json) if config.access_log else None
    observed = None
    if config.access_log or config.metrics:
        observers: list = [log] if log is not None else []
        if config.metrics:
            observers.append(RequestDurations())
        inner = observed = ObserveMiddleware(inner, observers,
                                             active=access_log_on if not config.metrics else None)
    if config.proxy_headers:
        # Outermost, so the access log sees the forwarded client.
        inner = ProxyHeadersMiddleware(inner, ProxyHeaders(config.forwarded_allow_ips))
    app = ASGIApp(inner, lifespan=config.lifespan, loop=config.loop,
                  root_path=config.root_path or "", name=name or None, ws=config.ws,
                  ws_max_size=config.ws_max_size, ws_per_message_deflate=config.ws_per_message_deflate)
    if log is not None:
        app.on_rejected = log.rejected  # requests the core refuses
    if observed is not None:
        app._counters = observed._counters  # type: ignore[attr-defined]  # Server.stats()
    return app
