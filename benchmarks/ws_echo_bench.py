"""WebSocket echo, side by side: server CPU per message and round-trips/s of fastloop and its
peers on the same ASGI echo application (and socketify's own echo), all driven by the same
client (`fastloop bench ws://...`), then the memory of idle WebSocket connections.

    python benchmarks/ws_echo_bench.py [--venv DIR] [--rounds 2] [--duration 3]
                                       [--connections 64] [--size 64] [--idle 10000]

Each server runs one worker pinned to --server-core, the client to --client-core; rounds go
A B C, A B C (the machine's noise spreads over all), and the medians are reported. Servers:
fastloop (benchmarks/ws_echo_asgi.py), uvicorn with --ws websockets-sansio and with --ws
websockets (the same application; from the peers' virtualenv, `python -m benchmarks
--install-peers`), socketify (uWebSockets, its own echo handler). A server whose package is
missing is skipped and said so. Compression is off on the wire (the client does not offer it).
CPU per message is the server process group's user+system time over the round-trips done.

--idle N opens N WebSocket connections to fastloop (the handshake, then nothing) and reports
its resident memory per connection (VmRSS after minus before, over N).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _harness import free_port, running  # noqa: E402

SOCKETIFY_ECHO = """
import sys
from socketify import App, CompressOptions
app = App()
app.ws("/*", {"compression": CompressOptions.DISABLED, "max_payload_length": 1 << 24,
              "idle_timeout": 0, "message": lambda ws, message, opcode: ws.send(message, opcode)})
app.listen(int(sys.argv[1]), lambda config: print("ready", flush=True))
app.run()
"""


def servers(venv: Optional[Path]) -> Dict[str, Optional[List[str]]]:
    """name -> the command (the port is appended), or None when its package is missing."""
    peer_python = str(venv / "bin" / "python") if venv else None

    def has(python: Optional[str], module: str) -> bool:
        return python is not None and subprocess.run(
            [python, "-c", f"import {module}"], capture_output=True).returncode == 0

    uvicorn = [peer_python, "-m", "uvicorn", "ws_echo_asgi:echo", "--app-dir", str(HERE),
               "--lifespan", "off", "--no-access-log", "--ws-ping-interval", "0",
               "--ws-max-size", str(1 << 24), "--host", "127.0.0.1", "--port"]
    return {
        "fastloop": [sys.executable, str(HERE / "ws_echo_asgi.py")],
        "uvicorn-sansio": (uvicorn[:6] + ["--ws", "websockets-sansio"] + uvicorn[6:]
                           if has(peer_python, "uvicorn, websockets") else None),
        "uvicorn-websockets": (uvicorn[:6] + ["--ws", "websockets"] + uvicorn[6:]
                               if has(peer_python, "uvicorn, websockets") else None),
        "socketify": ([peer_python, "-c", SOCKETIFY_ECHO] if has(peer_python, "socketify") else None),
    }


def bench(port: int, core: int, connections: int, duration: float, size: int) -> dict:
    out = subprocess.run(["taskset", "-c", str(core), sys.executable, "-m", "fastloop", "bench",
                          f"ws://127.0.0.1:{port}/", "-c", str(connections), "-d", f"{duration}s",
                          "--ws-message-size", str(size), "--json"],
                         capture_output=True, text=True, timeout=duration + 60)
    return json.loads(out.stdout)


def one_run(name: str, cmd: List[str], args: argparse.Namespace) -> dict:
    port = free_port()
    argv = cmd + [str(port)]
    with running(name, argv, port, core=args.server_core, cwd=str(HERE)) as server:
        bench(port, args.client_core, args.connections, 0.5, args.size)  # warm up
        cpu0 = server.cpu_seconds()
        result = bench(port, args.client_core, args.connections, args.duration, args.size)
        cpu = server.cpu_seconds() - cpu0
    done = result["requests"]
    return {"round_trips_per_s": result["rps"], "round_trips": done, "failed": result["failed"],
            "cpu_us_per_message": cpu / done * 1e6 if done else None,
            "p50_us": result["latency_us"]["p50"], "p99_us": result["latency_us"]["p99"]}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_memory(count: int, core: int) -> dict:
    """fastloop's resident memory per idle WebSocket connection, over count of them."""
    port = free_port()
    socks: List[socket.socket] = []
    with running("fastloop", [sys.executable, str(HERE / "ws_echo_asgi.py"), str(port)], port,
                 core=core, cwd=str(HERE)) as server:
        time.sleep(0.5)
        before = rss_kib(server.pid)
        try:
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                key = base64.b64encode(os.urandom(16))
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("closed during the handshake")
                    head += chunk
                if not head.startswith(b"HTTP/1.1 101 "):
                    raise RuntimeError(f"not upgraded: {head[:100]!r}")
                socks.append(s)
            time.sleep(1.0)
            after = rss_kib(server.pid)
        finally:
            for s in socks:
                s.close()
    return {"connections": count, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_connection": (after - before) * 1024 / count}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=HERE / ".venv", help="the peers' virtualenv")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    ap.add_argument("--servers", help="comma-separated names (default: all found)")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 2 * args.idle + 1024)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    found = servers(args.venv if args.venv.exists() else None)
    names = args.servers.split(",") if args.servers else list(found)
    for name in names:
        if found.get(name) is None:
            print(f"{name}: skipped (not installed in {args.venv})")
    names = [n for n in names if found.get(n)]
    runs: Dict[str, List[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names:
            try:
                runs[name].append(one_run(name, found[name], args))  # type: ignore[arg-type]
            except Exception as exc:  # a peer that fails is reported, the others still run
                print(f"{name} round {r + 1}: failed: {exc}")
            if runs[name]:
                print(f"{name} round {r + 1}: {runs[name][-1]}", flush=True)
    print(f"\nWebSocket echo, {args.size}-byte text messages, {args.connections} connections, "
          f"{args.duration:g} s, medians of {args.rounds} rounds (server on core {args.server_core}, "
          f"client on core {args.client_core}):\n")
    print("| server | round-trips/s | server CPU µs/message | p50 µs | p99 µs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {}
    for name in names:
        if not runs[name]:
            continue
        m = {k: statistics.median(r[k] for r in runs[name]) for k in
             ("round_trips_per_s", "cpu_us_per_message", "p50_us", "p99_us")}
        medians[name] = m
        print(f"| {name} | {m['round_trips_per_s']:,.0f} | {m['cpu_us_per_message']:.2f} | "
              f"{m['p50_us']:.0f} | {m['p99_us']:.0f} |")
    if "fastloop" in medians:
        for name, m in medians.items():
            if name != "fastloop":
                ratio = medians["fastloop"]["cpu_us_per_message"] / m["cpu_us_per_message"]
                print(f"fastloop CPU per message / {name}: {ratio:.2f}x")
    if args.idle:
        mem = idle_memory(args.idle, args.server_core)
        print(f"\nidle WebSockets: {mem['connections']} connections, fastloop RSS "
              f"{mem['rss_before_kib']} -> {mem['rss_after_kib']} KiB: "
              f"{mem['bytes_per_connection']:,.0f} bytes per connection")
    print("json " + json.dumps({"runs": runs, "medians": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
