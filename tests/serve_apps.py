"""Applications that tests/test_cli.py and tests/test_processes.py serve in child processes
(`fastloop serve serve_apps:NAME`); each answers with its process id where that helps a test
tell workers apart."""

import ctypes
import logging
import os
import threading
import time

import fastloop


def make_app() -> fastloop.App:
    app = fastloop.App()
    app.static("/", "static\n")

    @app.get("/pid")
    def pid(request):
        return str(os.getpid())

    @app.get("/slow")
    def slow(request):
        seconds, _, tag = request.query.partition("&")
        if tag:  # tests wait for this line to know the request is in a handler
            logging.getLogger("serve_apps").warning("handler started: %s", tag)
        time.sleep(float(seconds or 0.5))
        return f"slept {os.getpid()}"

    @app.get("/freeze")
    def freeze(request):
        # Blocks the whole worker process hard: a C call made while holding the GIL (PyDLL
        # does not release it), so no other Python thread of this process runs meanwhile.
        ctypes.PyDLL(None).sleep(int(request.query or 60))
        return "thawed"

    @app.get("/threads")
    def threads(request):
        # "HANDLERS LOOPS": the threads this process runs, by the names fastloop gives them.
        names = [t.name for t in threading.enumerate()]
        return (f"{sum(n.startswith('fastloop-handler-') for n in names)} "
                f"{sum(n.startswith('fastloop-worker-') for n in names)}")

    @app.get("/items/{id:int}")
    def item(request, id):
        return f"item {id}"

    return app


app = make_app()


def wsgi(environ, start_response):
    """A plain WSGI app: echoes the path and the process id."""
    body = f"wsgi {environ['PATH_INFO']} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


not_an_app = 42


async def asgi(scope, receive, send):  # pragma: no cover - loaded, never served
    pass


async def asgi_echo_scope(scope, receive, send):
    """ASGI: answers the client, scheme, Host header and path it was given, as JSON; over a
    WebSocket, the same as the first message, then echoes."""
    if scope["type"] == "websocket":
        import json
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(
            {"client": list(scope["client"] or []), "scheme": scope["scheme"]})})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send(dict(message, type="websocket.send"))
    if scope["type"] != "http":
        return
    import json
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    body = json.dumps({"client": list(scope["client"] or []), "scheme": scope["scheme"],
                       "host": host, "path": scope["path"],
                       "root_path": scope["root_path"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
