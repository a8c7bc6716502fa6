"""A fastloop server for tests that need a process of its own, here one with few descriptors.

    python fd_limited_server.py --nofile 64 [--runtime-threads N] [--dispatch MODE]

Lowers the soft RLIMIT_NOFILE to --nofile (the hard limit stays), serves GET / -> 200 "Hello"
on 127.0.0.1 and a free port, and prints one JSON line {"port": ..., "pid": ...} once it
accepts. Then it reads commands from stdin, one a line, and answers each with one JSON line:
"stats" prints Server.stats(); "quit" (or EOF) stops the server,
prints its final stats and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int, required=True)
    parser.add_argument("--runtime-threads", type=int, default=1)
    parser.add_argument("--dispatch", default=None)
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))

    import fastloop  # after the limit, so nothing here depends on what the import opens

    app = fastloop.App()
    app.static("/", b"Hello", content_type="text/plain")
    server = fastloop.Server(app, host="127.0.0.1", port=0, runtime_threads=args.runtime_threads,
                             dispatch=args.dispatch)
    server.start()

    def emit(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit({"port": server.port, "pid": os.getpid()})
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                emit(server.stats())
            elif command == "quit":
                break
            else:
                emit({"error": f"unknown command {command!r}"})
    finally:
        server.stop(timeout=2.0)
    emit(server.stats())


if __name__ == "__main__":
    main()
