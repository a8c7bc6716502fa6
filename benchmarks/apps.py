"""The same four endpoints for every peer server of the suite (benchmarks/run.py).

    GET  /          "Hello, World!" (text/plain, built per request)
    GET  /json      {"message": "Hello, World!"} serialized per request (application/json)
    POST /upload    reads the whole body and answers its length in decimal
    GET  /download  1 MiB of b"x" (application/octet-stream, prebuilt)

Module attributes for servers that load an application by name (run with benchmarks/ as the
working directory): ``wsgi_app`` (granian --interface wsgi, gunicorn, and fastloop's WSGI
server in fastloop_suite_server.py), ``asgi_app`` (the raw ASGI app: uvicorn, granian
--interface asgi, hypercorn, fastloop serve --interface asgi), ``rsgi_app`` (granian --interface
rsgi), ``fastapi_app`` (the same ASGI servers; only GET / and GET /json, built by FastAPI as its
users write it, on first use). Servers that are started from Python are run by this file:

    python benchmarks/apps.py {socketify|bjoern|fastpysgi|mrhttp|mrhttp-cached} PORT

Each binds 127.0.0.1:PORT with one worker and serves until SIGTERM. The peer packages are
imported lazily, so importing this module needs none of them.
"""

from __future__ import annotations

import json
import sys

HELLO = b"Hello, World!"
DOWNLOAD = b"x" * (1 << 20)
MESSAGE = {"message": "Hello, World!"}


def _json_body() -> bytes:
    return json.dumps(MESSAGE).encode()


# -- WSGI (PEP 3333) --------------------------------------------------------------------------

def wsgi_app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    ctype = "text/plain"
    if path == "/json":
        body, ctype = _json_body(), "application/json"
    elif path == "/upload":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        got = 0
        while got < length:
            chunk = stream.read(min(length - got, 1 << 16))
            if not chunk:
                break
            got += len(chunk)
        body = str(got).encode()
    elif path == "/download":
        body, ctype = DOWNLOAD, "application/octet-stream"
    else:
        body = HELLO
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


# -- ASGI (uvicorn) ----------------------------------------------------------------------------

async def asgi_app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: nothing to set up
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    ctype = b"text/plain"
    if path == "/json":
        body, ctype = _json_body(), b"application/json"
    elif path == "/upload":
        got, more = 0, True
        while more:
            message = await receive()
            got += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(got).encode()
    elif path == "/download":
        body, ctype = DOWNLOAD, b"application/octet-stream"
    else:
        body = HELLO
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- FastAPI (the ASGI servers) ----------------------------------------------------------------

def build_fastapi_app():
    """GET / as plain text and GET /json as a dict that FastAPI serializes: its usual path."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    text = HELLO.decode()

    @app.get("/", response_class=PlainTextResponse)
    async def hello():
        return text

    @app.get("/json")
    async def as_json():
        return MESSAGE

    return app


def __getattr__(name: str):
    # fastapi_app is built when a server asks for it, so importing this module needs no FastAPI.
    if name != "fastapi_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["fastapi_app"] = build_fastapi_app()
    return app


# -- RSGI (granian) ----------------------------------------------------------------------------

async def rsgi_app(scope, proto):
    path = scope.path
    ctype = "text/plain"
    if path == "/json":
        body, ctype = _json_body(), "application/json"
    elif path == "/upload":
        body = str(len(await proto())).encode()
    elif path == "/download":
        body, ctype = DOWNLOAD, "application/octet-stream"
    else:
        body = HELLO
    proto.response_bytes(200, [("content-type", ctype)], body)


# -- servers started from Python ---------------------------------------------------------------

def run_socketify(port: int) -> None:
    from socketify import App

    app = App()

    def hello(res, req):
        res.write_header("Content-Type", "text/plain")
        res.end(HELLO)

    def as_json(res, req):
        res.write_header("Content-Type", "application/json")
        res.end(_json_body())

    async def upload(res, req):
        data = await res.get_data()
        res.end(str(len(data.getvalue())).encode())

    def download(res, req):
        res.write_header("Content-Type", "application/octet-stream")
        res.end(DOWNLOAD)

    app.get("/", hello)
    app.get("/json", as_json)
    app.post("/upload", upload)
    app.get("/download", download)
    app.listen({"port": port, "host": "127.0.0.1"},
               lambda config: print(f"listening on {port}", flush=True))
    app.run()


def run_bjoern(port: int) -> None:
    import bjoern

    bjoern.run(wsgi_app, "127.0.0.1", port)


def run_fastpysgi(port: int) -> None:
    import fastpysgi

    fastpysgi.run(wsgi_app=wsgi_app, host="127.0.0.1", port=port, workers=1, loglevel=0)


def run_mrhttp(port: int, cached: bool) -> None:
    import asyncio

    import mrhttp

    # mrhttp asks asyncio.get_event_loop() for a loop after installing uvloop's policy, which
    # newer uvloop answers with an error when none is set: set one first.
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = mrhttp.Application()
    text = HELLO.decode()

    @app.route("/", options=["cache"] if cached else [], _type="text")
    def hello(r):
        return text

    @app.route("/json", _type="json")
    def as_json(r):
        return _json_body().decode()

    @app.route("/upload", methods=["POST"], _type="text")
    def upload(r):
        return str(len(r.body or b""))

    big = DOWNLOAD.decode()

    @app.route("/download", _type="text")
    def download(r):
        return big

    app.run(host="127.0.0.1", port=port, cores=1)


RUNNERS = {
    "socketify": run_socketify,
    "bjoern": run_bjoern,
    "fastpysgi": run_fastpysgi,
    "mrhttp": lambda port: run_mrhttp(port, cached=False),
    "mrhttp-cached": lambda port: run_mrhttp(port, cached=True),
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in RUNNERS:
        print(f"usage: apps.py {{{'|'.join(RUNNERS)}}} PORT", file=sys.stderr)
        return 2
    RUNNERS[argv[0]](int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
