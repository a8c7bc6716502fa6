"""Property: whatever sequence of ASGI messages an application sends (valid or not, with
exceptions raised, caught or returned early), the wire carries one well-framed answer and
then the next pipelined answer intact, or an answer cut by a close; never a corrupted
keep-alive connection (the invariant of fuzz/answers.py, as test_answer_properties.py)."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
from asgi_kit import serve_asgi

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
if not os.path.isfile(os.path.join(FUZZ, "answers.py")):
    pytest.skip("fuzz/ is not beside these tests (installed tests only)", allow_module_level=True)
sys.path.insert(0, FUZZ)

from answers import check_exchange, exchange  # noqa: E402

_fd, FILE = tempfile.mkstemp(prefix="fastloop-asgi-prop-")
os.write(_fd, bytes(range(256)) * 40)
os.close(_fd)

NAMES = [b"x-a", b"content-length", b"Content-Length", b"transfer-encoding", b"connection",
         b"server", b"date", b"keep-alive", b"x\x00", b"x y", b"", b"set-cookie", "x-str", 5]
VALUES = [b"1", b"3", b"0", b"abc", b"chunked", b"close", b"a\r\nx-evil: 1", b"a\x00", b"\t",
          b"-1", b"99999999999999999999", b" 3 ", b"3,3", b"\xe9", "str", 5]
STATUSES = [200, 201, 204, 304, 404, 500, 100, 199, 999, 1000, 0, "200", None, 200.0]
BODIES = [b"", b"ab", b"x" * 5000, b"y" * 70000, "text", bytearray(b"cd"), memoryview(b"ef"),
          5, None]

headers = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=4)


@st.composite
def start(draw):
    message = {"type": "http.response.start", "status": draw(st.sampled_from(STATUSES))}
    if draw(st.booleans()):
        message["headers"] = draw(headers)
    if draw(st.integers(0, 3)) == 0:
        message["trailers"] = True
    return message


@st.composite
def body(draw):
    message = {"type": "http.response.body"}
    piece = draw(st.sampled_from(BODIES))
    if piece is not None:
        message["body"] = piece
    if draw(st.booleans()):
        message["more_body"] = draw(st.booleans())
    return message


message = st.one_of(
    start(), body(), body(), body(),
    st.builds(lambda path, more: {"type": "http.response.pathsend", "path": path},
              st.sampled_from([FILE, "relative", "/nonexistent/file"]), st.none()),
    st.builds(lambda h, more: {"type": "http.response.trailers", "headers": h, "more_trailers": more},
              headers, st.booleans()),
    st.sampled_from([{"type": "http.response.nonsense"}, {}, ["http.response.body"], None,
                     "raise", "return", "receive"]),
)

CURRENT: list = [[], False]


async def app(scope, receive, send):
    if scope["path"] == "/next":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"next"})
        return
    steps, swallow = CURRENT
    body_done = False
    for step in steps:
        if step == "raise":
            raise ValueError("the app failed on purpose")
        if step == "return":
            return
        try:
            if step == "receive":
                if not body_done:  # a receive() after the body waits for the client to go
                    body_done = not (await receive()).get("more_body")
            else:
                await send(step)
        except Exception:
            if not swallow:  # an app that catches send()'s error and goes on
                raise


@pytest.fixture(scope="module")
def server():
    with serve_asgi(app) as srv:
        yield srv
    os.unlink(FILE)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(message, max_size=6), swallow=st.booleans(),
       valid_start=st.booleans(), request=st.sampled_from(["get", "head", "http10", "post"]))
def test_any_asgi_messages_give_one_well_framed_answer_or_a_cut(
        server, steps, swallow, valid_start, request):
    if valid_start:  # most real answers begin right: explore what follows a good start
        steps = [{"type": "http.response.start", "status": 200}] + steps
    CURRENT[:] = [steps, swallow]
    head = request == "head"
    wire, closed = exchange(server.port, {
        "get": b"GET /case HTTP/1.1\r\nHost: t\r\n\r\n",
        "head": b"HEAD /case HTTP/1.1\r\nHost: t\r\n\r\n",
        "http10": b"GET /case HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "post": b"POST /case HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    }[request], head)
    check_exchange(wire, closed, head)
