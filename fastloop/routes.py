"""The route table: what an App compiles to, and everything the core reads of it.

Theory of operation. Server.start() asks its App for a RouteTable once (App.route_table())
and gives that one object to every event loop (core/worker.pyx) and to the handler threads
(core/handler.pyx). The core reads its public fields and nothing else of an App:

  lookup        lookup(request) -> Match, for any request: the truth, and the only place
                that decides 404 and 405. The core asks it on a handler thread, with the GIL,
                for every Python request that `exact` does not answer.
  exact         {path: Match}: a fast path over lookup. When a request's method is in the
                Match's methods, the core calls its handler without asking lookup (one dict
                lookup per request); every other request goes to lookup. Each entry is the
                Match lookup would give for those methods.
  statics       a StaticRoute(path, head, body) per static route: answered for GET and HEAD
                by the event loops themselves, in C, with no Python at all. lookup answers
                them too (App.static registers a Python twin), for the requests C leaves
                to Python (an absolute-form target) and for a table wrapped without statics.
  stream_paths  exact paths (str) whose requests go to Python as soon as the head arrives,
                the body following as it comes (Request.stream), instead of once buffered.
  stream_bodies every request with a body streams it so (ASGI).
  on_rejected   on_rejected(status, client, line, sent), or None: told of each request the
                core answers with an error itself (the access log); see core/notes.pyx.
  websocket_routes  {exact path: async handler}: the paths of an App's @app.websocket routes
                the core upgrades valid WebSocket requests for (copied at start). Empty with
                websocket_any.
  websocket_any every valid WebSocket upgrade, on any path, goes to the application (ASGI, or
                an App with WebSocket routes whose paths have parameters).
  websocket_lookup  lookup(path) -> (handler, params) or None: an App's WebSocket route for a
                raw path, exact or with parameters; the Server runs the handler found on an
                asyncio loop (fastloop/websocket.py). None: the App has no WebSocket routes.
  websocket_wrap  wrap(asgi_app) -> asgi_app, or None: put around the ASGI application that
                runs the WebSocket routes (an observer, such as the access log, sees each
                handshake); the core does not read it, the Server does.

What is copied when. statics and stream_paths are copied into C when a Server starts: a
static route added later is answered by its Python twin, a streaming path added later is
buffered. An App's own exact dict and lookup stay live: a Python route or WSGI mount
registered after start() is served (App.route_table()). A wrapped table (wrapped()) copies its exact fast path
at the moment it is built, with the handlers wrapped; its lookup stays live.

A Match(handler, params, methods, status, kind): the core calls handler(request, **params)
(handler(request) when params is None) and sends what it returns. A miss is a Match too:
NOT_FOUND and method_not_allowed(allow) carry a handler that returns the 404, or the 405 with
its Allow header, so the core knows neither status, and a wrapper that wraps handlers (the
access log) sees those answers as well. methods: the methods the matched path answers (the
Allow of a 405; ANY_METHOD for a mounted WSGI app). kind: what the route speaks, HTTP for all
of them today, and the core does not read it yet; a route of another kind (@app.websocket,
WEBSOCKET) will be told apart by it, with no change to the table's shape.

The core reads a Match by position (core/response.pyx, MATCH_*): keep the field order.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable, Container, Dict, Iterable, NamedTuple, Optional, Sequence, Tuple

from ._core import Response

__all__ = ["ANY_METHOD", "FOUND", "HTTP", "Lookup", "Match", "METHOD_NOT_ALLOWED", "NOT_FOUND",
           "NOT_FOUND_STATUS", "RouteTable", "StaticRoute", "WEBSOCKET", "find_nothing", "found",
           "method_not_allowed"]

Handler = Callable[..., Any]

# Match.kind
HTTP = "http"
WEBSOCKET = "websocket"  # reserved for @app.websocket routes; no route has it yet

# A Match's fields by position (core/response.pyx reads them so too)
MATCH_HANDLER, MATCH_PARAMS, MATCH_METHODS, MATCH_STATUS, MATCH_KIND = range(5)

# Match.status: what the lookup found
FOUND = 0
NOT_FOUND_STATUS = 404
METHOD_NOT_ALLOWED = 405


class _AnyMethod:
    """The methods of a mounted WSGI app: every method is allowed, the app decides."""

    def __contains__(self, method: object) -> bool:
        return True

    def __iter__(self):  # only read to build an Allow header, which never happens
        return iter(())

    def __repr__(self) -> str:
        return "ANY_METHOD"


ANY_METHOD = _AnyMethod()


class Match(tuple):
    """What a lookup found for a request (see the module docstring): a tuple of five fields,
    built from one tuple like a struct sequence, Match((handler, params, methods, status,
    kind)), or with found(), NOT_FOUND and method_not_allowed(). A tuple subclass with no
    __new__ of its own, because a pattern route builds one per request: this costs less than
    a NamedTuple, whose __new__ runs Python code."""

    __slots__ = ()

    handler = property(itemgetter(0), doc="what the core calls: handler(request, **params)")
    params = property(itemgetter(1), doc="keyword arguments for handler (path parameters), or None")
    methods = property(itemgetter(2), doc="the methods the matched path answers (a 405's Allow)")
    status = property(itemgetter(3), doc="FOUND, NOT_FOUND_STATUS or METHOD_NOT_ALLOWED")
    kind = property(itemgetter(4), doc="what the route speaks: HTTP (WEBSOCKET later)")

    def with_handler(self, handler: Handler) -> "Match":
        """This Match with another handler (a wrapper's)."""
        return Match((handler,) + self[1:])

    def __repr__(self) -> str:
        return "Match(handler={!r}, params={!r}, methods={!r}, status={!r}, kind={!r})".format(*self)


def found(handler: Handler, methods: Container[str], params: Optional[Dict[str, Any]] = None,
          kind: str = HTTP) -> Match:
    """The Match of a route that takes the request: handler(request, **params) answers it."""
    return Match((handler, params, methods, FOUND, kind))


class StaticRoute(NamedTuple):
    """A static route as the event loops answer it: path, then the head without its Date and
    Connection lines (status line, Server, Content-Type, Content-Length, fixed headers), then
    the body."""

    path: bytes
    head: bytes
    body: bytes


Lookup = Callable[[Any], Match]

_NOT_FOUND_ANSWER = Response(b"Not Found", 404, content_type="text/plain")


def _answer_not_found(request: Any, **params: Any) -> Response:
    return _NOT_FOUND_ANSWER


NOT_FOUND = Match((_answer_not_found, None, (), NOT_FOUND_STATUS, HTTP))


def find_nothing(request: Any) -> Match:
    """The lookup of a table with no route: NOT_FOUND for every request."""
    return NOT_FOUND


def method_not_allowed(allow: Sequence[str]) -> Match:
    """The Match of a path that answers other methods only: a 405 whose Allow lists allow.
    Built once per route (its answer is shared by every request)."""
    answer = Response(b"Method Not Allowed", 405, {"Allow": ", ".join(allow)}, "text/plain")

    def answer_not_allowed(request: Any, **params: Any) -> Response:
        return answer

    return Match((answer_not_allowed, None, tuple(allow), METHOD_NOT_ALLOWED, HTTP))


_KEEP: Any = object()


class RouteTable:
    """The routes the core serves (see the module docstring for each field)."""

    __slots__ = ("lookup", "exact", "statics", "stream_paths", "stream_bodies", "on_rejected",
                 "websocket_routes", "websocket_any", "websocket_lookup", "websocket_wrap")

    def __init__(self, lookup: Lookup = find_nothing, exact: Optional[Dict[str, Match]] = None,
                 statics: Iterable[Tuple[bytes, bytes, bytes]] = (), stream_paths: Iterable[str] = (),
                 stream_bodies: bool = False,
                 on_rejected: Optional[Callable[[int, Any, str, int], None]] = None,
                 websocket_routes: Optional[Dict[str, Handler]] = None,
                 websocket_any: bool = False,
                 websocket_lookup: Optional[Callable[[str], Optional[Tuple[Handler, Dict[str, Any]]]]] = None,
                 websocket_wrap: Optional[Callable[[Any], Any]] = None) -> None:
        self.lookup = lookup
        self.exact: Dict[str, Match] = {} if exact is None else exact
        self.statics: Tuple[StaticRoute, ...] = tuple(StaticRoute(*s) for s in statics)
        self.stream_paths: Tuple[str, ...] = tuple(stream_paths)
        self.stream_bodies = stream_bodies
        self.on_rejected = on_rejected
        self.websocket_routes: Dict[str, Handler] = {} if websocket_routes is None else websocket_routes
        self.websocket_any = websocket_any
        self.websocket_lookup = websocket_lookup
        self.websocket_wrap = websocket_wrap

    def find(self, request: Any) -> Match:
        """The Match the core acts on for a Python request: exact's entry when it takes the
        request's method, else lookup's (core/response.pyx, call_handler, does the same)."""
        match = self.exact.get(request.path)
        if match is not None and request.method in match[MATCH_METHODS]:
            return match
        return self.lookup(request)

    def replace(self, **fields: Any) -> "RouteTable":
        """A copy with the given fields changed (the exact dict itself is shared, not copied)."""
        unknown = set(fields) - set(RouteTable.__slots__)
        if unknown:
            raise TypeError(f"a RouteTable has no field {', '.join(sorted(unknown))}")
        return RouteTable(**{name: fields.get(name, getattr(self, name)) for name in RouteTable.__slots__})

    def wrapped(self, wrap: Callable[[Handler], Handler], statics: bool = True,
                on_rejected: Any = _KEEP) -> "RouteTable":
        """This table with every handler it gives as wrap(handler), 404 and 405 answers
        included. wrap(handler) returns a handler taking the same arguments. statics=False
        leaves the static routes to their Python twins, so that they are wrapped too (at the
        cost of the GIL per request). on_rejected replaces this table's when given."""
        find = self.find

        def lookup(request: Any) -> Match:
            match = find(request)
            return match.with_handler(wrap(match[MATCH_HANDLER]))

        exact = {path: match.with_handler(wrap(match.handler)) for path, match in self.exact.items()}
        return self.replace(lookup=lookup, exact=exact,
                            statics=self.statics if statics else (),
                            on_rejected=self.on_rejected if on_rejected is _KEEP else on_rejected)
