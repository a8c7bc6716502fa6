"""Throughput of the WebSocket protocol engine alone (fastloop/core/ws*.pyx), no sockets.

    python benchmarks/ws_engine.py [--seconds 1]

Prints one line per measurement: the frame parser over a buffer of masked client frames
(unmasking and, for text, UTF-8 validation included), as ns per frame and MB/s of payload;
and the zlib compressor and inflater per message. Each figure is the best of a few timed
rounds of at least --seconds / 4; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's fastloop first

from fastloop._core import WsDeflater, WsParser, ws_frame, ws_parse_count  # noqa: E402

KEY = b"\x37\xfa\x21\x3d"


def best_rate(fn, seconds: float) -> float:
    """Calls per second of fn, the best of 4 rounds of seconds / 4 each."""
    best = 0.0
    for _ in range(4):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 4:
                break
        best = max(best, calls / elapsed)
    return best


def parser(kind: str, size: int, count: int, seconds: float) -> None:
    payload = (b"a" * size) if kind == "text" else os.urandom(size)
    frame = ws_frame(1 if kind == "text" else 2, payload, mask=KEY)
    stream = frame * count
    assert ws_parse_count(bytearray(stream))[1] == count
    copy = best_rate(lambda: bytearray(stream), seconds)
    rate = best_rate(lambda: ws_parse_count(bytearray(stream)), seconds)
    per_call = 1 / rate - 1 / copy  # the copy that unmasking in place needs is not the parser's
    print(f"ws-parse kind={kind} payload={size} frames={count} ns_per_frame={per_call / count * 1e9:.1f} "
          f"payload_MB_s={size * count / per_call / 1e6:.0f}")


def deflate(size: int, seconds: float) -> None:
    message = (b"the quick brown fox jumps over the lazy dog %d " * (size // 40 + 1))[:size]
    d = WsDeflater(15, True)
    rate = best_rate(lambda: d.compress(message), seconds)
    comp = zlib.compressobj(wbits=-15)
    data = (comp.compress(message) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]
    framed = ws_frame(2, data, rsv1=True, mask=KEY)
    params = {"client_max_window_bits": 15, "client_no_context_takeover": True,
              "server_max_window_bits": 15, "server_no_context_takeover": True}
    p = WsParser(max_size=1 << 24, deflate=params, inflate_room=65536)
    assert p.feed(framed) == [("binary", message)]
    inflate_rate = best_rate(lambda: p.feed(framed), seconds)
    print(f"ws-deflate payload={size} compressed={len(data)} deflate_us={1e6 / rate:.1f} "
          f"inflate_us={1e6 / inflate_rate:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()
    parser("text", 64, 10000, args.seconds)
    parser("binary", 64, 10000, args.seconds)
    parser("text", 1 << 20, 4, args.seconds)
    parser("binary", 1 << 20, 4, args.seconds)
    deflate(64, args.seconds)
    deflate(1 << 16, args.seconds)


if __name__ == "__main__":
    main()
