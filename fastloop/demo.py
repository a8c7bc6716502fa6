"""`fastloop demo` (also plain `python -m fastloop`): a server with a static and a Python route."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import POLLER, App, Request, Server
from .listen import STARTUP_FAILURE, StartupError
from .process import run_until_signal

__all__ = ["main", "demo_app"]


def demo_app() -> App:
    app = App()
    app.static("/", b"Hello, World!\n")

    @app.route("/hello")
    def hello(request: Request) -> str:
        name = request.query.partition("name=")[2] or "world"
        return f"Hello from Python, {name}!\n"

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastloop demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks one)")
    parser.add_argument("--threads", type=int, default=4,
                        help="handler threads, that run the Python routes (default 4)")
    parser.add_argument("--runtime-threads", type=int, default=1,
                        help="event-loop threads (default 1)")
    parser.add_argument("--dispatch", choices=("reuseport", "acceptor"), default=None,
                        help="how connections reach event loops (default: reuseport on Linux)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    server = Server(demo_app(), host=args.host, port=args.port, threads=args.threads,
                    runtime_threads=args.runtime_threads, dispatch=args.dispatch)

    def announce() -> None:
        print(f"fastloop demo on {server.url} ({POLLER}, {server.runtime_threads} event "
              f"loop(s), {server.threads} handler thread(s), {server.dispatch} dispatch)",
              flush=True)
        print(f"  static route:  curl {server.url}", flush=True)
        print(f"  Python route:  curl '{server.url}hello?name=you'", flush=True)
        print("Ctrl-C stops it.", flush=True)

    try:
        status = run_until_signal(server, 5.0, started=announce)
    except StartupError as exc:
        print(f"fastloop: {exc}", file=sys.stderr)
        return STARTUP_FAILURE
    except KeyboardInterrupt:  # a second Ctrl-C left a handler running
        status = 1
    print("stopped; counters:", json.dumps({k: v for k, v in server.stats().items()
                                            if k != "workers"}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
