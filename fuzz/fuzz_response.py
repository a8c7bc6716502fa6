"""Fuzzes how fastloop frames handler results with atheris (libFuzzer), over real sockets.

    python fuzz/fuzz_response.py -max_total_time=300 -artifact_prefix=/tmp/
    python fuzz/fuzz_response.py -runs=2000     # about what tests/test_fuzz.py runs

Each input is a stream of choices (fuzz/answers.py: make_result) that builds what a handler
returns: plain bodies, Responses with random status, headers (framing fields, control
characters, non-str values), content types, reasons, lengths, files and iterables that yield
odd pieces or fail half way. A fastloop server in this process answers it, followed by a
pipelined GET /next, and the invariant is checked on the bytes received: exactly one
well-framed answer and /next's intact answer, or an answer cut by a close (check_exchange).
A failed check raises, and atheris saves the input as crash-<sha1>.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from answers import check_exchange, exchange, make_result, request_for, serve_results

import fastloop

APP, CURRENT = serve_results()
SERVER = fastloop.Server(APP, host="127.0.0.1", port=0)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)

    def draw(n: int) -> int:
        return fdp.ConsumeIntInRange(0, n - 1) if n > 1 else 0

    request, head = request_for(draw)
    CURRENT[0] = make_result(draw)
    wire, closed = exchange(SERVER.port, request, head)
    check_exchange(wire, closed, head)


def main() -> None:
    SERVER.start()
    try:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
    finally:
        SERVER.stop(1.0)


if __name__ == "__main__":
    main()
