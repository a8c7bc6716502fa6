"""fastloop.App: the routes a server answers.

Theory of operation. An App registers routes; Server.start() compiles them, once, into the
RouteTable the core is given (route_table(); fastloop/routes.py says what the core reads):

1. exact paths -> their Match, in a dict (`exact`). Most routes live here, so most
   requests cost one dict lookup before the handler runs, with no call into this module.
2. every other request goes to the table's lookup, App._lookup, in one Python call: an exact
   path asked with another method is a 405; else the paths with parameters
   ("/users/{id:int}"), tried in registration order; else, for a path a pattern did not take,
   the mounted WSGI apps, longest prefix first; else the 405 of the first pattern that matched
   the path, or a 404. (WSGIApp wraps this lookup: its application takes the 404s.)

The 404 and the 405 (with an Allow header listing the path's methods) are decided here, as
Matches whose handler returns them. A path served with several methods keeps one handler per
method; its Match then holds a small dispatcher, and a path with one handler holds the
handler itself. Path parameters reach the handler as keyword arguments:
`def user(request, id): ...`.

Static routes are copied into C at start; Python routes stay live (the table holds this App's
own exact dict and lookup), so a route registered after start() is served too.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import unquote

from ._core import Response, static_response_head
from .routes import (ANY_METHOD, FOUND, HTTP, MATCH_METHODS, NOT_FOUND, Match, RouteTable,
                     StaticRoute, found, method_not_allowed)

__all__ = ["App", "ANY_METHOD"]

Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]]]
Handler = Callable[..., Any]

# {name} or {name:converter}; a converter is a regex for one value and a function over it.
_PARAM = re.compile(r"{([^{}:]+)(?::([^{}]+))?}")
CONVERTERS: Dict[str, Tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),             # one path segment
    "int": (r"[0-9]+", int),
    "float": (r"[0-9]+(?:\.[0-9]+)?", float),
    "path": (r".*", str),               # the rest of the path, slashes included
}


class _MethodTable:
    """The handlers of one route path, by method, and its Matches: the one for the methods
    it answers, and the 405 for every other method."""

    __slots__ = ("handlers", "match", "not_allowed")

    def __init__(self) -> None:
        self.handlers: Dict[str, Handler] = {}
        self.match = found(self.dispatch, ())
        self.not_allowed = method_not_allowed(())

    def add(self, methods: Sequence[str], handler: Handler) -> None:
        for method in methods:
            self.handlers[method] = handler
        allowed: List[str] = []
        for method in self.handlers:
            allowed.append(method)
            # GET answers HEAD too unless HEAD has a handler of its own; the core drops the body.
            if method == "GET" and "HEAD" not in self.handlers:
                allowed.append("HEAD")
        # One handler: no dispatch step at all.
        one = all(h is handler for h in self.handlers.values())
        self.match = found(handler if one else self.dispatch, tuple(allowed))
        self.not_allowed = method_not_allowed(allowed)

    @property
    def entry(self) -> Tuple[Handler, Tuple[str, ...]]:
        """(handler, methods): the path's route in the shape App._routes shows it."""
        return self.match.handler, self.match.methods  # type: ignore[return-value]

    def handler_for(self, method: str) -> Optional[Handler]:
        handler = self.handlers.get(method)
        if handler is None and method == "HEAD":
            handler = self.handlers.get("GET")
        return handler

    def dispatch(self, request: Any, **params: Any) -> Any:
        # Only called through self.match, for one of its methods, so a handler exists.
        return self.handler_for(request.method)(request, **params)  # type: ignore[misc]


class _Pattern:
    """A route path with parameters, compiled once into a regex."""

    __slots__ = ("path", "prefix", "regex", "converters", "table")

    def __init__(self, path: str) -> None:
        parts = []
        converters: Dict[str, Callable[[str], Any]] = {}
        end = 0
        for m in _PARAM.finditer(path):
            name, kind = m.group(1), m.group(2) or "str"
            if not name.isidentifier() or name == "request":
                raise ValueError(f"invalid path parameter name {name!r} in {path!r}")
            if name in converters:
                raise ValueError(f"path parameter {name!r} appears twice in {path!r}")
            if kind not in CONVERTERS:
                raise ValueError(f"unknown converter {kind!r} in {path!r}; "
                                 f"known: {', '.join(CONVERTERS)}")
            regex, convert = CONVERTERS[kind]
            parts.append(re.escape(path[end:m.start()]))
            parts.append(f"(?P<{name}>{regex})")
            converters[name] = convert
            end = m.end()
        parts.append(re.escape(path[end:]))
        self.path = path
        # Most paths fail on their literal start; checking it first skips the regex.
        self.prefix = path[:path.index("{")]
        self.regex = re.compile("".join(parts) + r"\Z")
        self.converters = converters
        self.table = _MethodTable()

    def match(self, path: str) -> Optional[Dict[str, Any]]:
        if not path.startswith(self.prefix):
            return None
        m = self.regex.match(path)
        if m is None:
            return None
        # Matched on the raw path, so an encoded "/" (%2F) stays inside one segment.
        return {name: self.converters[name](unquote(value)) for name, value in m.groupdict().items()}


class App:
    """A set of routes. Exact paths are matched on the path alone (the query string is
    ignored); paths with parameters, e.g. "/users/{id:int}", are matched in registration order
    after the exact ones.

    Static routes are answered entirely in C, without the GIL; Python routes run their handler
    with the GIL, once per batch of ready requests. A handler takes the request, plus one
    keyword argument per path parameter, and returns bytes, str or a fastloop.Response.
    Unknown paths answer 404; a known path with another method answers 405 with Allow.
    """

    def __init__(self) -> None:
        # What route_table() compiles from (see the module docstring).
        self._exact: Dict[str, Match] = {}             # exact path -> its Match: the table's exact
        self._statics: Dict[str, StaticRoute] = {}     # static path -> its prebuilt answer
        self._tables: Dict[str, _MethodTable] = {}     # exact path -> its handlers by method
        self._patterns: Dict[str, _Pattern] = {}       # path with parameters -> its pattern
        self._mounts: List[Tuple[str, Match]] = []     # (prefix, WSGI app's Match), longest first
        self._stream_paths: List[str] = []   # exact paths whose body C hands over as it arrives
        self._ws_routes: Dict[str, Handler] = {}  # exact path -> WebSocket handler (websocket.py)
        self._ws_patterns: List[Tuple[_Pattern, Handler]] = []  # ... paths with parameters, in order

    def route_table(self) -> RouteTable:
        """The routes, compiled for the core (Server.start() calls it once): static routes and
        streaming paths are copied now; the exact dict and the lookup are this App's own, so
        Python routes registered later are served too."""
        # With parameters in a WebSocket path the core cannot match it in C: every upgrade
        # comes to Python then, and the lookup decides (403 for no route, as Starlette does).
        ws_any = bool(self._ws_patterns)
        return RouteTable(self._lookup, self._exact, self._statics.values(), self._stream_paths,
                          websocket_routes={} if ws_any else self._ws_routes, websocket_any=ws_any,
                          websocket_lookup=self._ws_lookup if self._ws_routes or ws_any else None)

    def static(self, path: str, body: Union[bytes, str], content_type: str = "text/plain",
               status: int = 200, headers: Headers = ()) -> None:
        """Answers GET and HEAD on path with a fixed response, prebuilt once and sent by C."""
        self._check_path(path)
        if "{" in path:
            raise ValueError(f"a static route has no parameters: {path!r}")
        if isinstance(body, str):
            body = body.encode("utf-8")
            if content_type == "text/plain":
                content_type = "text/plain; charset=utf-8"
        body = bytes(body)
        head = static_response_head(status, content_type, headers, len(body))
        answer = Response(body, status, headers, content_type)
        # The same answer from Python, for the rare request C does not match itself (an
        # absolute-form target, say): the route table stays the one source of truth.
        self._add(path, ("GET", "HEAD"), lambda request: answer)
        self._statics[path] = StaticRoute(path.encode("latin-1"), head, body)

    def route(self, path: str, methods: Iterable[str] = ("GET",),
              stream: bool = False) -> Callable[[Handler], Handler]:
        """Decorator: handler(request, **path_params) answers methods on path. It returns
        bytes, str or a fastloop.Response. GET routes answer HEAD too, without a body.
        stream=True: the handler runs as soon as the head arrives and reads a large body
        with request.stream() as it comes (an exact path only, for now).

        Path parameters: "{name}" matches one segment (str), "{name:int}" digits (int),
        "{name:float}" a decimal number (float), "{name:path}" the rest of the path. Values
        are percent-decoded. Registering a path again with other methods adds to it."""
        self._check_path(path)
        if "{" in path:
            _Pattern(path)  # a bad pattern fails here, at the decorator's line
            if stream:
                raise ValueError(f"a streaming route needs an exact path (the core matches "
                                 f"it in C): {path!r}")
        allowed = tuple(dict.fromkeys(m.upper() for m in methods))
        if not allowed:
            raise ValueError("a route needs at least one method")

        def register(handler: Handler) -> Handler:
            self._add(path, allowed, handler)
            if stream and path not in self._stream_paths:
                self._stream_paths.append(path)
            return handler

        return register

    def get(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: @app.get(path) is @app.route(path, methods=["GET"]) (HEAD included)."""
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: @app.post(path) is @app.route(path, methods=["POST"])."""
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: @app.put(path) is @app.route(path, methods=["PUT"])."""
        return self.route(path, ("PUT",))

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: @app.delete(path) is @app.route(path, methods=["DELETE"])."""
        return self.route(path, ("DELETE",))

    def patch(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: @app.patch(path) is @app.route(path, methods=["PATCH"])."""
        return self.route(path, ("PATCH",))

    def websocket(self, path: str) -> Callable[[Handler], Handler]:
        """Registers an async handler for WebSocket upgrades of path: it is called with a
        fastloop.websocket.WebSocket, plus one keyword argument per path parameter ("{name}",
        "{name:int}", ... as for route()); see docs/websockets.md."""
        self._check_path(path)
        pattern = _Pattern(path) if "{" in path else None  # a bad pattern fails here

        def register(handler: Handler) -> Handler:
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(f"a WebSocket handler is an async function, not {handler!r}")
            if pattern is None:
                self._ws_routes[path] = handler
            else:
                self._ws_patterns.append((pattern, handler))
            return handler
        return register

    def _ws_lookup(self, path: str) -> Optional[Tuple[Handler, Dict[str, Any]]]:
        """The WebSocket route for a raw path: exact paths first, then those with parameters
        in registration order (as for HTTP routes)."""
        handler = self._ws_routes.get(path)
        if handler is not None:
            return handler, {}
        for pattern, handler in self._ws_patterns:
            params = pattern.match(path)
            if params is not None:
                return handler, params
        return None

    def mount_wsgi(self, prefix: str, wsgi_app: Callable, **options: Any) -> None:
        """Serves every path under prefix ("/legacy" covers "/legacy" and "/legacy/...") with
        a WSGI (PEP 3333) application, any method. SCRIPT_NAME is prefix, PATH_INFO the rest.
        Routes of this App still win over the mount. options: see fastloop.wsgi.WSGIHandler."""
        from .wsgi import WSGIHandler  # wsgi builds on this module

        prefix = prefix.rstrip("/")
        if prefix:
            self._check_path(prefix)
        handler = WSGIHandler(wsgi_app, script_name=prefix, **options)
        self._mounts.append((prefix, found(handler, ANY_METHOD)))
        self._mounts.sort(key=lambda mount: len(mount[0]), reverse=True)

    def _add(self, path: str, methods: Sequence[str], handler: Handler) -> None:
        if "{" in path:
            pattern = self._patterns.get(path)
            if pattern is None:
                pattern = self._patterns[path] = _Pattern(path)
            pattern.table.add(methods, handler)
            return
        if "GET" in methods or "HEAD" in methods:
            self._statics.pop(path, None)  # a handler now answers what C answered
        table = self._tables.get(path)
        if table is None:
            table = self._tables[path] = _MethodTable()
        table.add(methods, handler)
        self._exact[path] = table.match

    def _lookup(self, request: Any) -> Match:
        """The table's lookup: the Match for any request (see the module docstring), in one
        call: a pattern route builds its Match per request, so nothing here is a call more
        than it must be. Called by the core, with the GIL, for what the exact dict does not
        answer; reads the registration tables as they are, so routes stay live."""
        path = request.path
        table = self._tables.get(path)
        if table is not None:
            match = table.match
            return match if request.method in match[MATCH_METHODS] else table.not_allowed
        not_allowed: Optional[Match] = None
        for pattern in self._patterns.values():
            params = pattern.match(path)
            if params is None:
                continue
            handler = pattern.table.handler_for(request.method)
            if handler is not None:
                return Match((handler, params, pattern.table.match[MATCH_METHODS], FOUND, HTTP))
            if not_allowed is None:  # keep looking: a later pattern may take this method
                not_allowed = pattern.table.not_allowed
        for prefix, mount in self._mounts:  # routes win over a mount, a pattern's 405 does not
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return mount
        return NOT_FOUND if not_allowed is None else not_allowed

    # ---- the registration tables in their older shapes (tests/test_app.py reads them) ----

    @property
    def _routes(self) -> Dict[str, Tuple[Handler, Tuple[str, ...]]]:
        """exact path -> (handler, methods)."""
        return {path: table.entry for path, table in self._tables.items()}

    def _resolve(self, request: Any) -> Optional[tuple]:
        """(handler, methods) for a path that is no exact route, path parameters bound, or
        None for a 404."""
        match = self._lookup(request)
        if match is NOT_FOUND:
            return None
        handler = match.handler
        if match.status == FOUND and match.params:
            handler = functools.partial(handler, **match.params)
        return handler, match.methods

    def _static_responses(self) -> List[StaticRoute]:
        """[StaticRoute(path, head, body)]: what route_table() gives the core's statics."""
        return list(self._statics.values())

    @staticmethod
    def _check_path(path: str) -> None:
        if not path.startswith("/") and path != "*":
            raise ValueError(f"a route path starts with '/': {path!r}")
