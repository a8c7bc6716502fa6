"""fastloop as a server of the suite (benchmarks/run.py), with the endpoints of apps.py.

    python benchmarks/fastloop_suite_server.py {static|py|wsgi} PORT [--runtime-threads N] [--workers N]

static  GET / and GET /download are static routes (answered in C, prebuilt); /json and
        POST /upload are Python routes as in "py"
py      every endpoint is a Python handler (fastloop.App routes)
wsgi    apps.wsgi_app, the WSGI application the WSGI peers serve, under fastloop.wsgi.WSGIApp

Binds 127.0.0.1:PORT and serves with fastloop.run (one process, or a supervisor over --workers
pre-forked processes) until SIGTERM. fastloop is imported from sys.path as it stands: the suite
puts a snapshot of the checkout first on PYTHONPATH, so that a rebuild in place during a run
cannot change the code under test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent))  # apps.py, after PYTHONPATH

import fastloop  # noqa: E402

from apps import DOWNLOAD, HELLO, MESSAGE, wsgi_app  # noqa: E402


def build_app(mode: str) -> fastloop.App:
    if mode == "wsgi":
        from fastloop.wsgi import WSGIApp

        return WSGIApp(wsgi_app)
    app = fastloop.App()
    if mode == "static":
        app.static("/", HELLO, content_type="text/plain")
        app.static("/download", DOWNLOAD, content_type="application/octet-stream")
    else:
        @app.route("/")
        def hello(request):
            return fastloop.Response(HELLO, content_type="text/plain")

        @app.route("/download")
        def download(request):
            return fastloop.Response(DOWNLOAD, content_type="application/octet-stream")

    @app.route("/json")
    def as_json(request):
        return fastloop.Response(json.dumps(MESSAGE).encode(), content_type="application/json")

    @app.route("/upload", methods=("POST",))
    def upload(request):
        return fastloop.Response(str(len(request.body)).encode(), content_type="text/plain")

    return app


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("static", "py", "wsgi"))
    p.add_argument("port", type=int)
    p.add_argument("--runtime-threads", type=int, default=1, help="event loops per process")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    fastloop.run(build_app(args.mode), host="127.0.0.1", port=args.port,
                 runtime_threads=args.runtime_threads,
                 workers=args.workers, timeout_graceful_shutdown=1.0, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
