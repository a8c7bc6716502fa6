"""Random handler results and the wire invariant they must keep, shared by the atheris harness
(fuzz/fuzz_response.py) and the hypothesis test (tests/test_answer_properties.py).

make_result(draw) builds what a handler returns from a stream of choices: draw(n) is an int
in [0, n). check_exchange() is the invariant: after the fuzzed request and a pipelined
GET /next, the bytes on the wire are exactly one well-framed answer followed by /next's
intact answer, or an answer cut short by a close; never two lengths, a forged header line,
a half head, or a short body on a live connection.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Callable, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from wire import NEXT, Truncated, exchange, read_answer  # noqa: E402,F401 (exchange: for callers)

import fastloop  # noqa: E402

Draw = Callable[[int], int]

NAMES = ["X-A", "Content-Length", "content-length", "Transfer-Encoding", "Connection", "Server",
         "Date", "Keep-Alive", "X\x00", "X Y", "", "Set-Cookie", "X:Y", 5]
VALUES = ["1", "3", "abc", "chunked", "close", "keep-alive", "a\r\nX-Evil: 1", "a\x00", "\t", "0",
          "-1", "99999999999999999999", " 3 ", "3,3", 5, "é", "\u0100"]
STATUSES = [200, 201, 204, 301, 304, 404, 500, 100, 101, 199, 999, 1000, 0, -1]
CTYPES = [None, "", "text/html", "a\r\nb", "a\x00"]
REASONS = [None, "Fine", "a\nb", "", "a\x7f"]
_FILES: List[str] = []


def _file(size: int) -> Any:
    while len(_FILES) <= size:
        fd, path = tempfile.mkstemp(prefix="fastloop-fuzz-")
        os.write(fd, bytes(range(256)) * (len(_FILES) // 256) + bytes(range(len(_FILES) % 256)))
        os.close(fd)
        _FILES.append(path)
    return open(_FILES[size], "rb")


def _pieces(draw: Draw) -> Any:
    items: List[Any] = []
    for _ in range(draw(5)):
        k = draw(8)
        items.append([b"ab", "é", bytearray(b"cd"), memoryview(b"ef"), b"", 7, None, b"x" * 5000][k])
    if draw(4) == 0:
        def failing():
            yield from items
            raise RuntimeError("the body iterable failed half way")
        return failing()
    return iter(items)


def _body(draw: Draw) -> Any:
    k = draw(8)
    if k == 0:
        return b"x" * [0, 1, 3, 300, 70000][draw(5)]
    if k == 1:
        return "é" * draw(4)
    if k == 2:
        return {"a": [1, "é"]}
    if k == 3:
        return None
    if k == 4:
        return _file(draw(4) * 3)
    if k == 5:
        return bytearray(b"abc")
    return _pieces(draw)


def make_result(draw: Draw) -> Any:
    """A handler result: a plain body, or a Response with random parts."""
    if draw(4) == 0:
        return _body(draw)
    headers: Any = [(NAMES[draw(len(NAMES))], VALUES[draw(len(VALUES))]) for _ in range(draw(4))]
    if draw(3) == 0:
        headers = dict((str(n), v) for n, v in headers)
    lengths = [None, None, 0, 3, 6, -1, "3", True, 2 ** 63, 70000]
    try:
        return fastloop.Response(_body(draw), STATUSES[draw(len(STATUSES))], headers,
                                 CTYPES[draw(len(CTYPES))], REASONS[draw(len(REASONS))],
                                 lengths[draw(len(lengths))])
    except (TypeError, ValueError, OverflowError):
        return fastloop.Response(b"refused by Response() itself")


def serve_results() -> Tuple[Any, List[Any]]:
    """An App whose /case answers the result put in the returned one-item list."""
    app = fastloop.App()
    app.static("/next", b"next")
    current: List[Any] = [None]

    @app.route("/case", methods=("GET", "HEAD"))
    def case(request: Any) -> Any:
        return current[0]

    return app, current


def check_exchange(data: bytes, closed: bool, head: bool) -> None:
    """The invariant (see the module docstring); raises AssertionError or wire.Malformed."""
    try:
        got = read_answer(data, head_request=head, eof=closed)
    except Truncated:
        assert closed
        return  # an answer cut short by a close: allowed, and nothing may follow it
    assert got is not None, data[:300]
    first, rest = got
    assert not any(name == "x-evil" for name, _ in first.headers), "a header line was forged"
    if not rest:
        assert closed or first.close_delimited, "the pipelined request got no answer"
        return
    nxt, after = read_answer(rest, eof=closed)  # type: ignore[misc]
    assert nxt.body == b"next" and after == b"", "the next answer is not intact"


def request_for(draw: Draw) -> Tuple[bytes, bool]:
    head = draw(4) == 0
    method = b"HEAD" if head else b"GET"
    if draw(5) == 0:
        return method + b" /case HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", head
    return method + b" /case HTTP/1.1\r\nHost: t\r\n\r\n", head
