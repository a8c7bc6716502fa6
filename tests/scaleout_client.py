"""A bounded load loop for tests/test_scaleout.py: `python scaleout_client.py HOST PORT SECONDS
[THREADS]`. Each thread sends GET /pid over a keep-alive connection, again and again, until
SIGTERM or SECONDS have passed, then one JSON line is printed: answers by status, answers by
the pid that gave them, and every request that got no complete answer (failed)."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time
from collections import Counter
from typing import List


def main() -> int:
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    status: Counter = Counter()
    pids: Counter = Counter()
    failures: List[str] = []
    deadline = time.monotonic() + seconds

    def run() -> None:
        conn = None
        while not stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                conn.request("GET", "/pid")
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append(repr(exc))
                conn.close()
                conn = None
                continue
            with lock:
                status[resp.status] += 1
                if resp.status == 200:
                    pids[body.decode()] += 1
            if resp.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    print(json.dumps({"status": status, "pids": pids, "failed": len(failures),
                      "failures": failures[:10]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
