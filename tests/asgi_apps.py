"""ASGI 3 applications for tests/test_asgi_frameworks.py, served by `fastloop serve` (or by
uvicorn, the reference the tests are checked against) in a child process run from tests/.

    asgi_apps:raw_app        plain ASGI: hello, scope, disconnects, tasks, lifespan, extensions
    asgi_apps:starlette_app  Starlette
    asgi_apps:fastapi_app    FastAPI
    asgi_apps:litestar_app   Litestar
    django_project(dest)     a `django-admin startproject` site with an admin user (for Django)

Theory of operation. The test and the application live in different processes, so the test
observes the application through the application itself: `/record/KEY` (`/record?id=KEY` in
raw_app) answers what the application noted under KEY (a background task ran, a dependency
exited, a disconnect was seen), and `/open/A/B` opens gate "A/B", which the application waits
on. A streamed answer waits on a
gate that the test opens only after it read the chunk before, so a server that holds chunks
back makes the application time out at a gate, and the test sees "gate timeout" in the body.

The frameworks are imported when their attribute is first read (PEP 562 module __getattr__), so
a server of one framework imports only that one. Paths to files the applications serve come
from the environment (FILE_ENV), set by the test that wrote them.
"""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List

FILE_ENV = "FASTLOOP_TEST_ASGI_FILE"            # a file for FileResponse and pathsend
SHUTDOWN_ENV = "FASTLOOP_TEST_ASGI_SHUTDOWN"    # raw_app writes this file at lifespan shutdown
FAIL_STARTUP_ENV = "FASTLOOP_TEST_ASGI_FAIL"    # raw_app fails lifespan startup with this text
GATE_TIMEOUT = 5.0  # longer than any test waits for a chunk, shorter than a hung test
STREAM_CHUNKS = 4
DJANGO_ADMIN = ("admin", "not-a-secret-1")

HELLO = b"Hello, World!"

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]


# -- what the test observes: records and gates -------------------------------------------------

RECORDS: Dict[str, List[Any]] = defaultdict(list)
_gates: Dict[str, asyncio.Event] = {}


def note(key: str, what: Any) -> None:
    RECORDS[key].append(what)


def _gate(key: str) -> asyncio.Event:
    # Whichever side comes first makes it: the test may open a gate before the app waits on it.
    return _gates.setdefault(key, asyncio.Event())


def open_gate(key: str) -> None:
    _gate(key).set()


async def wait_gate(key: str) -> bool:
    """True once the test opened gate KEY; False after GATE_TIMEOUT seconds."""
    try:
        await asyncio.wait_for(_gate(key).wait(), GATE_TIMEOUT)
        return True
    except asyncio.TimeoutError:
        return False


async def gated_chunks(token: str, n: int = STREAM_CHUNKS) -> AsyncIterator[bytes]:
    """Chunk i, then wait until the test opened gate TOKEN/i, which it does once it has read
    chunk i: so chunk i+1 is produced only after chunk i reached the client."""
    for i in range(n):
        yield f"chunk {i}\n".encode()
        if i + 1 < n and not await wait_gate(f"{token}/{i}"):
            yield b"gate timeout\n"
            return


async def background_job(token: str) -> None:
    note(token, "task started")
    note(token, "task done" if await wait_gate(f"bg/{token}") else "task gate timeout")


def served_file() -> str:
    return os.environ[FILE_ENV]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TeapotError(Exception):
    """Raised by a route, answered 418 by the application's exception handler."""


# -- raw ASGI ----------------------------------------------------------------------------------

LIFESPAN: Dict[str, Any] = {}


async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            failure = os.environ.get(FAIL_STARTUP_ENV)
            if failure:
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
            LIFESPAN["startup"] = True
            if "state" in scope:
                scope["state"]["greeting"] = "hello from startup"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            path = os.environ.get(SHUTDOWN_ENV)
            if path:
                Path(path).write_text(f"shutdown ran after {LIFESPAN.get('slow', 0)} slow answer(s)")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, body: bytes, status: int = 200,
                  ctype: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, obj: Any, status: int = 200) -> None:
    await _answer(send, json.dumps(obj).encode(), status, b"application/json")


def _query(scope: Scope) -> Dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope["query_string"].decode("latin-1")))


def _scope_view(scope: Scope) -> Dict[str, Any]:
    """The scope as JSON: bytes as latin-1 text, tuples as lists."""
    return {
        "type": scope["type"], "asgi": scope["asgi"], "http_version": scope["http_version"],
        "method": scope["method"], "scheme": scope["scheme"], "path": scope["path"],
        "raw_path": None if scope.get("raw_path") is None else scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"), "root_path": scope["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "header_types": sorted({type(k).__name__ + "," + type(v).__name__
                                for k, v in scope["headers"]}),
        "client": None if scope.get("client") is None else list(scope["client"]),
        "server": None if scope.get("server") is None else list(scope["server"]),
        "state": dict(scope["state"]) if "state" in scope else None,
        "extensions": sorted(scope.get("extensions") or {}),
    }


async def _wait_for_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the body as it comes, then keeps awaiting receive(): notes every message under
    ?id=, and answers nothing (the client goes away)."""
    key = _query(scope)["id"]
    while True:
        message = await receive()
        note(key, [message["type"], len(message.get("body", b"")), message.get("more_body", False)])
        if message["type"] == "http.disconnect":
            return


async def _stream_until_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Streams 1 KiB pieces every 10 ms while a second task awaits receive(); once the client
    is gone, notes under ?id= what the app saw: the message that receive() returned, the error
    (if any) that a send() raised while streaming, and what one more send() did."""
    key = _query(scope)["id"]

    async def until_disconnect() -> Dict[str, Any]:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message

    watcher = asyncio.ensure_future(until_disconnect())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    send_error = None
    try:
        for _ in range(500):  # 5 s at most
            if watcher.done():
                break
            await send({"type": "http.response.body", "body": b"s" * 1024, "more_body": True})
            await asyncio.sleep(0.01)
    except OSError as exc:
        send_error = type(exc).__name__
    try:
        seen = (await asyncio.wait_for(watcher, 2.0))["type"]
    except asyncio.TimeoutError:
        seen = None
    try:
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        late = "returned"
    except OSError as exc:
        late = f"OSError:{type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 (what the server raised is the observation)
        late = f"other:{type(exc).__name__}"
    note(key, {"received": seen, "send_error": send_error, "send_after_disconnect": late})


async def _pathsend(scope: Scope, receive: Receive, send: Send) -> None:
    if "http.response.pathsend" not in (scope.get("extensions") or {}):
        await _answer(send, b"http.response.pathsend is not in scope['extensions']", 501)
        return
    size = os.path.getsize(served_file())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(size).encode())]})
    await send({"type": "http.response.pathsend", "path": served_file()})


async def _trailers(scope: Scope, receive: Receive, send: Send) -> None:
    if "http.response.trailers" not in (scope.get("extensions") or {}):
        await _answer(send, b"http.response.trailers is not in scope['extensions']", 501)
        return
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]})
    parts = [b"first part\n", b"second part\n"]
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    await send({"type": "http.response.trailers", "more_trailers": False,
                "headers": [(b"x-checksum", digest(b"".join(parts)).encode())]})


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The whole body's size and SHA-256, and how many http.request messages carried it."""
    body, messages, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        messages += 1
        body.append(message.get("body", b""))
        more = message.get("more_body", False)
    data = b"".join(body)
    await _json(send, {"size": len(data), "sha256": digest(data), "messages": messages})


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    await _answer(send, HELLO)


async def _scope(scope: Scope, receive: Receive, send: Send) -> None:
    await _json(send, _scope_view(scope))


async def _record(scope: Scope, receive: Receive, send: Send) -> None:
    await _json(send, RECORDS.get(_query(scope)["id"], []))


async def _tasks(scope: Scope, receive: Receive, send: Send) -> None:
    await _json(send, {"tasks": len(asyncio.all_tasks())})


async def _lifespan_seen(scope: Scope, receive: Receive, send: Send) -> None:
    await _json(send, {"startup": LIFESPAN.get("startup", False),
                       "state": dict(scope["state"]) if "state" in scope else None})


async def _slow(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers after ?s= seconds, noted under ?id= when it starts; counts its answers (which the
    lifespan shutdown reports, so a test sees whether shutdown waited for them)."""
    query = _query(scope)
    note(query["id"], "started")
    await asyncio.sleep(float(query["s"]))
    await _answer(send, b"slow answer")
    LIFESPAN["slow"] = LIFESPAN.get("slow", 0) + 1


def _decoded(value: Any) -> Any:
    """A message of a /script, from JSON: {"$b": latin-1 text} is bytes, lists stay lists
    (headers), everything else as it is (so a str body or a bad status reaches the server)."""
    if isinstance(value, dict):
        if set(value) == {"$b"}:
            return value["$b"].encode("latin-1")
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


async def _script(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends the messages that the JSON request body lists, valid or not, in order; a step
    "raise" raises instead. Whatever send() raises goes to the server, as it would from any
    application."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    for step in json.loads(body):
        if step == "raise":
            raise RuntimeError("a /script step raised, on purpose")
        await send(_decoded(step))


async def _open(scope: Scope, receive: Receive, send: Send) -> None:
    """/open/A/B opens gate A/B."""
    open_gate(scope["path"].split("/", 2)[2])
    await _answer(send, b"opened")


async def _hold(scope: Scope, receive: Receive, send: Send) -> None:
    """Never calls receive(): notes "holding" under ?id=, waits for gate hold/ID, answers."""
    key = _query(scope)["id"]
    note(key, "holding")
    await wait_gate(f"hold/{key}")
    await _answer(send, b"held")


async def _flood(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends up to ?mib= MiB in 64 KiB pieces to a client that may not read; keeps the bytes
    that send() has taken so far as the one entry under ?id=."""
    query = _query(scope)
    key, total = query["id"], int(query["mib"]) << 20
    progress = RECORDS[key]
    progress[:] = [0]
    piece = b"f" * 65536
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(total).encode())]})
    try:
        while progress[0] < total:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            progress[0] += len(piece)
    except OSError:
        pass  # the client left (a server of ASGI spec 2.4 says so)


async def _crash(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("raw_app crashed before http.response.start, on purpose")


RAW_ROUTES: Dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "": _hello, "scope": _scope, "wait": _wait_for_disconnect, "stream": _stream_until_disconnect,
    "record": _record, "tasks": _tasks, "lifespan": _lifespan_seen, "pathsend": _pathsend,
    "trailers": _trailers, "echo": _echo, "crash": _crash, "slow": _slow,
    "script": _script, "hold": _hold, "flood": _flood,
    "open": _open,
}


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Plain ASGI 3: routed on the first segment of the path (RAW_ROUTES)."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    route = RAW_ROUTES.get(scope["path"].split("/")[1])
    if route is None:
        await _answer(send, b"not found", 404)
    else:
        await route(scope, receive, send)


# -- Starlette ---------------------------------------------------------------------------------

def build_starlette() -> Any:
    import contextlib

    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse, Response,
                                     StreamingResponse)
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Dict[str, Any]]:
        yield {"greeting": "hello from the starlette lifespan"}

    async def as_json(request: Request) -> Response:
        return JSONResponse({"framework": "starlette", "items": [1, 2, 3]})

    async def item(request: Request) -> Response:
        return JSONResponse({"item_id": request.path_params["item_id"],
                             "q": request.query_params.get("q"),
                             "tags": request.query_params.getlist("tag")})

    async def form(request: Request) -> Response:
        async with request.form() as data:
            return JSONResponse({k: str(v) for k, v in data.items()})

    async def upload(request: Request) -> Response:
        async with request.form() as data:
            f = data["file"]
            content = await f.read()
            return JSONResponse({"filename": f.filename, "size": len(content),
                                 "sha256": digest(content), "note": data["note"]})

    async def stream(request: Request) -> Response:
        return StreamingResponse(gated_chunks(request.path_params["token"]), media_type="text/plain")

    async def open_(request: Request) -> Response:
        open_gate(f"{request.path_params['a']}/{request.path_params['b']}")
        return PlainTextResponse("opened")

    async def record(request: Request) -> Response:
        return JSONResponse(RECORDS.get(request.path_params["key"], []))

    async def file(request: Request) -> Response:
        return FileResponse(served_file(), filename="served.bin")

    async def background(request: Request) -> Response:
        token = request.path_params["token"]
        return PlainTextResponse("answered", background=BackgroundTask(background_job, token))

    async def teapot(request: Request) -> Response:
        raise TeapotError("short and stout")

    async def crash(request: Request) -> Response:
        raise RuntimeError("a starlette route crashed, on purpose")

    async def state(request: Request) -> Response:
        return PlainTextResponse(request.state.greeting)

    async def on_teapot(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "teapot", "detail": str(exc)}, status_code=418)

    return Starlette(routes=[
        Route("/json", as_json),
        Route("/items/{item_id:int}", item),
        Route("/form", form, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream/{token}", stream),
        Route("/open/{a}/{b}", open_),
        Route("/record/{key}", record),
        Route("/file", file),
        Route("/background/{token}", background, methods=["POST"]),
        Route("/teapot", teapot),
        Route("/crash", crash),
        Route("/state", state),
    ], exception_handlers={TeapotError: on_teapot}, lifespan=lifespan)


# -- FastAPI -----------------------------------------------------------------------------------

def build_fastapi() -> Any:
    import contextlib
    from typing import List as L
    from typing import Optional

    from fastapi import BackgroundTasks, Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
    from pydantic import BaseModel

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Dict[str, Any]]:
        yield {"greeting": "hello from the fastapi lifespan"}

    app = FastAPI(lifespan=lifespan)

    class Item(BaseModel):
        name: str
        price: float
        tags: L[str] = []

    async def tracked(token: str) -> AsyncIterator[Dict[str, str]]:
        note(token, "dependency entered")
        try:
            yield {"token": token}
        finally:
            note(token, "dependency exited")

    @app.exception_handler(TeapotError)
    async def on_teapot(request: Request, exc: TeapotError) -> JSONResponse:
        return JSONResponse({"error": "teapot", "detail": str(exc)}, status_code=418)

    @app.get("/json")
    async def as_json() -> Dict[str, Any]:
        return {"framework": "fastapi", "items": [1, 2, 3]}

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: Optional[str] = None, limit: int = 10) -> Dict[str, Any]:
        return {"item_id": item_id, "q": q, "limit": limit}

    @app.post("/items")
    async def create(item: Item) -> Dict[str, Any]:
        return {"created": item.model_dump() if hasattr(item, "model_dump") else item.dict()}

    @app.post("/form")
    async def form(name: str = Form(), colour: str = Form()) -> Dict[str, str]:
        return {"name": name, "colour": colour}

    @app.post("/upload")
    async def upload(file: UploadFile = File(), note_: str = Form(alias="note")) -> Dict[str, Any]:
        content = await file.read()
        return {"filename": file.filename, "size": len(content), "sha256": digest(content),
                "note": note_}

    @app.get("/stream/{token}")
    async def stream(token: str) -> StreamingResponse:
        return StreamingResponse(gated_chunks(token), media_type="text/plain")

    @app.get("/open/{a}/{b}")
    async def open_(a: str, b: str) -> PlainTextResponse:
        open_gate(f"{a}/{b}")
        return PlainTextResponse("opened")

    @app.get("/record/{key}")
    async def record(key: str) -> List[Any]:
        return RECORDS.get(key, [])

    @app.get("/file")
    async def file() -> FileResponse:
        return FileResponse(served_file(), filename="served.bin")

    @app.post("/background/{token}")
    async def background(token: str, tasks: BackgroundTasks) -> PlainTextResponse:
        tasks.add_task(background_job, token)
        return PlainTextResponse("answered")

    @app.get("/dependency/{token}")
    async def dependency(resource: Dict[str, str] = Depends(tracked)) -> Dict[str, str]:
        note(resource["token"], "route ran")
        return resource

    @app.get("/teapot")
    async def teapot() -> None:
        raise TeapotError("short and stout")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a fastapi route crashed, on purpose")

    @app.get("/state")
    async def state(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    return app


# -- Litestar ----------------------------------------------------------------------------------

def build_litestar() -> Any:
    from litestar import Litestar, MediaType, get
    from litestar.response import Stream

    @get("/", media_type=MediaType.TEXT)
    async def hello() -> str:
        return HELLO.decode()

    @get("/json")
    async def as_json() -> Dict[str, Any]:
        return {"framework": "litestar", "items": [1, 2, 3]}

    @get("/stream/{token:str}")
    async def stream(token: str) -> Stream:
        return Stream(gated_chunks(token), media_type=MediaType.TEXT)

    @get("/open/{a:str}/{b:str}", media_type=MediaType.TEXT)
    async def open_(a: str, b: str) -> str:
        open_gate(f"{a}/{b}")
        return "opened"

    return Litestar(route_handlers=[hello, as_json, stream, open_])


# -- Django ------------------------------------------------------------------------------------

DJANGO_SETTINGS_EXTRA = """
# Added by tests/asgi_apps.py: a fast password hasher, so that logging in takes no 1 s of PBKDF2.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
"""


def django_project(dest: Path, name: str = "djsite") -> str:
    """`django-admin startproject NAME` in DEST, migrated (SQLite in DEST), with the superuser
    DJANGO_ADMIN; returns the ASGI application to serve ("NAME.asgi:application"), importable
    with DEST on sys.path."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "django", "startproject", name, str(dest)], check=True,
                   timeout=60)
    with open(dest / name / "settings.py", "a", encoding="utf-8") as f:
        f.write(DJANGO_SETTINGS_EXTRA)
    # One child for both steps: each Django start-up costs a second on a busy machine.
    code = ("import django; django.setup()\n"
            "from django.core.management import call_command\n"
            "from django.contrib.auth.models import User\n"
            "call_command('migrate', verbosity=0)\n"
            "User.objects.create_superuser(%r, 'admin@example.com', %r)\n" % DJANGO_ADMIN)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": f"{name}.settings"}
    subprocess.run([sys.executable, "-c", code], cwd=dest, env=env, check=True, timeout=120)
    return f"{name}.asgi:application"


# -- the applications, built on first use ------------------------------------------------------

_BUILDERS = {"starlette_app": build_starlette, "fastapi_app": build_fastapi,
             "litestar_app": build_litestar}


def __getattr__(name: str) -> Any:
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = _BUILDERS[name]()
    globals()[name] = app
    return app
