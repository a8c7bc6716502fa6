"""fastloop serving one Python route, the handler counterpart of fastloop_static_server.py.

Usage: python benchmarks/fastloop_py_server.py PORT [--threads N]

Binds 127.0.0.1:PORT (0 picks a free port), prints "listening on PORT" once
the socket accepts, and serves GET / from a Python handler that returns
Response(b"Hello, World!", content_type="text/plain") -- the same bytes as the
static route, so the two differ only in who builds the answer -- until SIGINT or
SIGTERM; then it stops the server and prints its stats to stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

# Run from a checkout: let the in-tree package win over any installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastloop  # noqa: E402

BODY = b"Hello, World!"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    app = fastloop.App()

    @app.route("/")
    def hello(request: object) -> fastloop.Response:
        return fastloop.Response(BODY, content_type="text/plain")

    srv = fastloop.Server(app, host="127.0.0.1", port=args.port, threads=args.threads)

    # As in fastloop_static_server.py: block the stop signals before start() creates
    # worker threads, so they inherit the mask and sigwait() below receives them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    srv.start()
    try:
        print(f"listening on {srv.port}", flush=True)
        signal.sigwait(stop_signals)
        print(f"stats: {srv.stats()}", file=sys.stderr)
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
