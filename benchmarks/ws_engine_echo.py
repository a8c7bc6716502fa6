"""A WebSocket echo server made of the protocol engine's Python view and asyncio, to run the
Autobahn suite against the engine before fastloop's loops serve WebSockets.

    python benchmarks/ws_engine_echo.py PORT      # prints "ready" once listening on 127.0.0.1

Not a server to use: one asyncio protocol per connection feeds WsParser and answers with the
engine's writer (ws_frame, ws_close_frame, ws_control_frame) and compressor (WsDeflater), so the
verdicts are the engine's: the handshake, every frame check, UTF-8, permessage-deflate. Each
message is echoed as one frame; a ping gets a pong; a close is echoed and the TCP connection
closed; a protocol error gets a close frame with its code, then the TCP connection is closed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's fastloop first

from fastloop._core import (WsDeflater, WsParser, ws_close_frame, ws_control_frame,  # noqa: E402
                            ws_frame, ws_handshake)

TEXT, BINARY, PONG = 1, 2, 10
MAX_SIZE = 1 << 26          # Autobahn's 9.x cases send messages of up to 16 MiB
MAX_HEAD = 65536


class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.head = b""
        self.parser: Optional[WsParser] = None
        self.deflater: Optional[WsDeflater] = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.parser is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    self.transport.close()
                return
            head, rest = self.head[:end + 4], self.head[end + 4:]
            status, answer, params = ws_handshake(head, "", {})
            if status != 101:
                self.transport.write(answer or b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()
                return
            self.transport.write(answer)
            self.parser = WsParser(max_size=MAX_SIZE, deflate=params, inflate_room=65536)
            if params is not None:
                self.deflater = WsDeflater(params["server_max_window_bits"],
                                           params["server_no_context_takeover"])
            data = rest
            if not data:
                return
        for event in self.parser.feed(data):
            kind = event[0]
            if kind in ("text", "binary"):
                payload = event[1].encode() if kind == "text" else event[1]
                opcode = TEXT if kind == "text" else BINARY
                if self.deflater is not None:
                    self.transport.write(ws_frame(opcode, self.deflater.compress(payload), rsv1=True))
                else:
                    self.transport.write(ws_frame(opcode, payload))
            elif kind == "ping":
                self.transport.write(ws_control_frame(PONG, event[1]))
            elif kind == "close":
                code, reason = event[1], event[2]
                if code == 1005:
                    self.transport.write(ws_close_frame())
                else:
                    self.transport.write(ws_close_frame(code, reason.encode()))
                self.transport.close()
            elif kind == "error":
                self.transport.write(ws_close_frame(event[1]))
                self.transport.close()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
