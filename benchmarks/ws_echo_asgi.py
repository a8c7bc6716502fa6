"""The WebSocket echo server the conformance and speed runs use: a raw ASGI echo application on
fastloop, which serves it with the loops' WebSocket support (core/ws_conn.pyx, asgi_ws.pyx).

    python benchmarks/ws_echo_asgi.py PORT [--no-deflate]   # prints "ready" once listening

Each message is echoed as it came (text as text, binary as binary); plain HTTP requests get a
short 200. Messages of up to 64 MiB are taken (Autobahn's 9.x cases send 16 MiB ones); server
pings are off, as in the reference runs of the peers.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's fastloop first

import fastloop  # noqa: E402
from fastloop.asgi import ASGIApp  # noqa: E402

MAX_SIZE = 1 << 26


async def echo(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"a WebSocket echo server\n"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def main() -> int:
    port = int(sys.argv[1])
    app = ASGIApp(echo, lifespan="off", name="ws-echo", ws_max_size=MAX_SIZE,
                  ws_per_message_deflate="--no-deflate" not in sys.argv)
    server = fastloop.Server(app, host="127.0.0.1", port=port, timeouts={"ws_ping": 0})
    server.start()
    print("ready", flush=True)
    return server.serve_started()


if __name__ == "__main__":
    sys.exit(main())
