"""fastloop answering GET / with "Hello, World!", the counterpart of baseline/epoll_server.c.

Usage: python benchmarks/fastloop_hello_server.py PORT [--runtime-threads N]
       [--python | --asgi | --fastapi | --wsgi]

Binds 127.0.0.1:PORT (0 picks a free port), prints "listening on PORT" once
the socket accepts, and serves GET / -> "Hello, World!" (text/plain) until
SIGINT or SIGTERM; then it stops the server and prints its stats to stderr.
The answer comes from a static route (built in C), or with --python from a
handler returning Response(b"Hello, World!", content_type="text/plain"): the
same bytes, so the two differ only in who builds the answer. With --asgi the answer comes
from the raw ASGI hello application (http.response.start, then one http.response.body);
with --fastapi from the FastAPI application of apps.py (its GET / and GET /json). With
--wsgi it comes from apps.wsgi_app, the WSGI application the WSGI peers of the suite serve,
under fastloop.wsgi.WSGIApp.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

# Run from a checkout: let the in-tree package win over any installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))  # apps.py

import fastloop  # noqa: E402

BODY = b"Hello, World!"


async def hello_asgi(scope: dict, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})  # type: ignore[operator]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--runtime-threads", type=int, default=1, help="event loops")
    parser.add_argument("--python", action="store_true", help="answer from a Python handler")
    parser.add_argument("--asgi", action="store_true", help="answer from an ASGI application")
    parser.add_argument("--fastapi", action="store_true",
                        help="serve apps.py's FastAPI application (GET / and GET /json)")
    parser.add_argument("--no-batch", action="store_true",
                        help="ASGI: keep the default scheduling policy (no SCHED_BATCH)")
    parser.add_argument("--wsgi", action="store_true", help="answer from a WSGI application")
    args = parser.parse_args()

    app = fastloop.App()
    if args.fastapi:
        from apps import build_fastapi_app

        from fastloop.asgi import ASGIApp
        app = ASGIApp(build_fastapi_app(), lifespan="off", batch_scheduling=not args.no_batch)
    elif args.asgi:
        from fastloop.asgi import ASGIApp
        app = ASGIApp(hello_asgi, lifespan="off", batch_scheduling=not args.no_batch)
    elif args.wsgi:
        from apps import wsgi_app

        from fastloop.wsgi import WSGIApp
        app = WSGIApp(wsgi_app)
    elif args.python:
        @app.route("/")
        def hello(request: object) -> fastloop.Response:
            return fastloop.Response(BODY, content_type="text/plain")
    else:
        app.static("/", BODY, content_type="text/plain")
    srv = fastloop.Server(app, host="127.0.0.1", port=args.port,
                          runtime_threads=args.runtime_threads)

    # Block the stop signals before start() creates worker threads, so they
    # inherit the mask and sigwait() below, in this thread, receives them.
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
