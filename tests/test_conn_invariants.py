"""The connection invariants of core/conn.pxd, as core/conn_check.pyx checks them after every
event in a FASTLOOP_DEBUG=1 build: each one broken alone is named, and connections in each
state the loop leaves them in pass."""

from __future__ import annotations

import pytest

from fastloop._core import TIMER_NAMES, conn_invariant_of

READ_HEAD, READ_BODY, IN_HANDLER, CLOSING, WEBSOCKET, STREAMING = range(6)
CLOSE_AFTER, BODY_FULL, JOB_WAITS = 1, 1024, 4096
BODY = TIMER_NAMES.index("body")
IDLE = TIMER_NAMES.index("idle")
BLOCK = (True, 16384, 0, 0)


@pytest.mark.parametrize("name, fields", [
    ("free slot", dict(fd=-1)),
    ("idle keep-alive", dict(timer=IDLE)),
    ("reading a head", dict(rb=(True, 16384, 0, 100), timer=TIMER_NAMES.index("header"))),
    ("reading a body", dict(state=READ_BODY, rb=(True, 32768, 10, 20000), timer=BODY)),
    ("with a handler", dict(state=IN_HANDLER, job=True)),
    ("streaming, full", dict(state=STREAMING, job=True, flags=BODY_FULL, timer=BODY)),
    ("streaming, the client owes body", dict(state=STREAMING, job=True, timer=BODY)),
    ("waiting for the client", dict(state=IN_HANDLER, job=True, flags=JOB_WAITS,
                                    wb=(True, 16384, 100, 5000), outq=True, outq_tail=True)),
    ("sending a file", dict(state=IN_HANDLER, job=True, file_fd=7, file_end=1)),
    ("lingering", dict(state=CLOSING, flags=CLOSE_AFTER, timer=TIMER_NAMES.index("linger"))),
    ("a WebSocket, its application running",
     dict(state=WEBSOCKET, ws=True, job=True, timer=TIMER_NAMES.index("ws_ping"))),
    ("a WebSocket whose application holds enough",
     dict(state=WEBSOCKET, ws=True, job=True, flags=BODY_FULL)),
    ("a WebSocket after its application",
     dict(state=WEBSOCKET, ws=True, timer=TIMER_NAMES.index("ws_close"))),
    ("lingering after a WebSocket", dict(state=CLOSING, ws=True, job=True, flags=CLOSE_AFTER)),
])
def test_connections_as_the_loop_leaves_them_pass(name, fields):
    assert conn_invariant_of(**fields) is None


@pytest.mark.parametrize("fields, broken", [
    (dict(fd=-1, job=True), "a free slot has no job"),
    (dict(fd=-1, timer=IDLE), "a free slot has no job"),
    (dict(fd=-1, rb=BLOCK), "a free slot holds no buffer"),
    (dict(state=6), "the state is one of the six"),
    (dict(state=IN_HANDLER), "a job while IN_HANDLER"),
    (dict(state=STREAMING), "a job while IN_HANDLER or STREAMING"),
    (dict(job=True), "a job while IN_HANDLER"),
    (dict(state=CLOSING, job=True, flags=CLOSE_AFTER), "a job while IN_HANDLER"),
    (dict(state=WEBSOCKET), "WebSocket state while WEBSOCKET"),
    (dict(ws=True), "WebSocket state while WEBSOCKET"),
    (dict(fd=-1, ws=True), "a free slot has no job"),
    (dict(flags=JOB_WAITS), "JOB_WAITS only while IN_HANDLER or STREAMING"),
    (dict(flags=JOB_WAITS, state=WEBSOCKET, ws=True), "JOB_WAITS only while IN_HANDLER or STREAMING"),
    (dict(state=IN_HANDLER, job=True, flags=BODY_FULL), "BODY_FULL only while STREAMING"),
    (dict(flags=BODY_FULL), "BODY_FULL only while STREAMING"),
    (dict(state=CLOSING), "CLOSING only with CLOSE_AFTER"),
    (dict(rb=(True, 100, 50, 40)), "a buffer's start <= end <= cap"),
    (dict(wb=(True, 100, 0, 101)), "a buffer's start <= end <= cap"),
    (dict(wb=(False, 100, 0, 0)), "a buffer without a block has no capacity"),
    (dict(outq=True), "the answer queue has a head exactly when it has a tail"),
    (dict(outq_tail=True), "the answer queue has a head exactly when it has a tail"),
    (dict(file_end=1), "an end to apply after a file only while a file is being sent"),
    (dict(timer=len(TIMER_NAMES)), "the timer is one of the kinds"),
    (dict(timer=IDLE, timer_linked=False), "a connection on a timer is linked into its kind's list"),
])
def test_each_invariant_broken_alone_is_named(fields, broken):
    assert conn_invariant_of(**fields).startswith(broken)
