"""Raw ASGI apps that `fastloop serve` loads in test_asgi_lifespan.py and test_asgi.py.
Each writes what happened, one word a line, to the file named by $ASGI_EVENTS, so a test in
another process can check what ran and in which order."""

from __future__ import annotations

import asyncio
import os


def note(word: str) -> None:
    path = os.environ.get("ASGI_EVENTS")
    if path:
        with open(path, "a") as f:
            f.write(word + "\n")


async def answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def lifespan(scope, receive, send) -> None:
    """Startup and shutdown noted; GET /slow takes a second, anything else answers at once."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                note("startup")
                scope["state"]["greeting"] = "hello"
                await send({"type": "lifespan.startup.complete"})
            else:
                note("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        note("slow-begin")
        await asyncio.sleep(1.0)
        note("slow-end")
    await answer(send, scope["state"]["greeting"].encode())


async def failing_startup(scope, receive, send) -> None:
    """Refuses to start, as the spec says: lifespan.startup.failed with a message."""
    if scope["type"] == "lifespan":
        note((await receive())["type"])
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        note((await receive())["type"])  # a lifespan.shutdown here would be the server's fault
        return
    await answer(send, b"never")


async def raising_startup(scope, receive, send) -> None:
    """Raises during its startup (an application that cannot start)."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("the startup raised")
    await answer(send, b"never")


async def no_lifespan(scope, receive, send) -> None:
    """No lifespan support: raises on any scope but http, as many small apps do."""
    if scope["type"] != "http":
        note(f"called-{scope['type']}")
        raise ValueError(f"unsupported scope {scope['type']}")
    await answer(send, b"plain")


async def scope_echo(scope, receive, send) -> None:
    """Answers "root_path path" of its scope (no lifespan)."""
    if scope["type"] != "http":
        raise ValueError("no lifespan")
    await answer(send, f"{scope['root_path']} {scope['path']}".encode())
