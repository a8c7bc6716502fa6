"""A FastAPI application with WebSocket routes for tests/test_asgi_websockets.py. No
`from __future__ import annotations` here: FastAPI reads the handlers' annotations as types."""

import queue

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status

SEEN: "queue.Queue[object]" = queue.Queue()  # what the handlers saw, for the test

app = FastAPI()


@app.websocket("/rooms/{room}")
async def room(ws: WebSocket, room: str, token: str = ""):
    if token != "secret":
        await ws.close(code=status.WS_1008_POLICY_VIOLATION)  # before accepting: a 403
        return
    await ws.accept()
    try:
        while True:
            data = await ws.receive_json()
            await ws.send_json({"room": room, "echo": data})
    except WebSocketDisconnect as exc:
        SEEN.put(exc.code)


@app.get("/")
def index():
    return {"ok": True}
