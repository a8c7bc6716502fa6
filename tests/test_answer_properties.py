"""Property: whatever a handler returns, the wire carries exactly one well-framed answer and
the next pipelined answer intact, or an answer cut by a close (fuzz/answers.py holds the
generator and the invariant; fuzz/fuzz_response.py runs the same under atheris)."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import running_server

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
if not os.path.isfile(os.path.join(FUZZ, "answers.py")):
    pytest.skip("fuzz/ is not beside these tests (installed tests only)", allow_module_level=True)
sys.path.insert(0, FUZZ)

from answers import check_exchange, exchange, make_result, request_for, serve_results  # noqa: E402

APP, CURRENT = serve_results()


@pytest.fixture(scope="module")
def server():
    with running_server(APP) as srv:
        yield srv


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_handler_result_is_one_well_framed_answer_or_a_cut(server, data):
    def draw(n: int) -> int:
        return data.draw(st.integers(0, n - 1)) if n > 1 else 0

    request, head = request_for(draw)
    CURRENT[0] = make_result(draw)
    wire, closed = exchange(server.port, request, head)
    check_exchange(wire, closed, head)
