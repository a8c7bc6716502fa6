"""fastloop.App: the routes a server answers."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence, Tuple, Union

from ._core import Response, static_response_head

__all__ = ["App"]

Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]]]


class App:
    """A set of routes, matched on the exact path (the query string is ignored).

    Static routes are answered entirely in C, without the GIL; Python routes run their handler
    with the GIL, once per batch of ready requests.
    """

    def __init__(self) -> None:
        # path -> (handler or None for a static route, allowed methods); read by the workers
        self._routes: dict = {}
        self._statics: dict = {}

    def static(self, path: str, body: bytes | str, content_type: str = "text/plain",
               status: int = 200, headers: Headers = ()) -> None:
        """Answers GET and HEAD on path with a fixed response, prebuilt once."""
        self._check_path(path)
        if isinstance(body, str):
            body = body.encode("utf-8")
            if content_type == "text/plain":
                content_type = "text/plain; charset=utf-8"
        body = bytes(body)
        head = static_response_head(status, content_type, headers, len(body))
        self._statics[path] = (path.encode("latin-1"), head, body)
        # The same answer from Python, for the rare request C does not match itself (an
        # absolute-form target, say): the route table stays the one source of truth.
        answer = Response(body, status, headers, content_type)
        self._routes[path] = (lambda request: answer, ("GET", "HEAD"))

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable:
        """Decorator: handler(request) answers methods on path. It returns bytes, str or a
        fastloop.Response. GET routes answer HEAD too, without a body."""
        self._check_path(path)
        allowed = tuple(m.upper() for m in methods)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed += ("HEAD",)

        def register(handler: Callable) -> Callable:
            self._statics.pop(path, None)
            self._routes[path] = (handler, allowed)
            return handler

        return register

    def _resolve(self, request: object) -> tuple | None:
        """(handler, methods) for a request whose path is not an exact route, or None (404).
        Called by the core, with the GIL, only on a miss of the exact-path table."""
        return None

    def _static_responses(self) -> list:
        """[(path bytes, head bytes, body bytes)], for the C core."""
        return list(self._statics.values())

    @staticmethod
    def _check_path(path: str) -> None:
        if not path.startswith("/") and path != "*":
            raise ValueError(f"a route path starts with '/': {path!r}")
