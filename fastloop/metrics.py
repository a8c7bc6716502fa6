"""--metrics: stats() of every worker process in the Prometheus text format, on a listener of
its own.

Theory of operation. One process serves the endpoint: the server itself with workers=1, the
supervisor otherwise. A supervised worker writes its counters to a snapshot file every
SNAPSHOT_INTERVAL seconds and once more after it stopped (written to a temporary name and
renamed, so a reader sees a whole snapshot or the previous one); the supervisor reads those
files when it is scraped. Nothing in a scrape waits on a worker, so a dead or hung worker cannot
hang the endpoint: its file is at most SNAPSHOT_INTERVAL old. Once a worker is gone, its last
snapshot is folded into `retired` and its file removed, so the summed counters keep growing
across SIGHUP and --limit-max-requests replacements (short of what a killed worker did after
its last snapshot).

Families: fastloop_<counter>_total sums every worker, past ones included;
fastloop_worker_<counter>_total{worker="<slot>",pid="<pid>"} is each live worker's own (two
pids share a slot while one replaces the other). Per-status, per-kind and per-errno counts are
labels. fastloop_request_duration_seconds{status="2xx",le=...} is the histogram of the time
from a Python handler's call to its answer, per status class (fastloop._durations), summed
over all workers, past ones included; it is not broken down per worker, to keep the series
few (a bucket per class per worker). Answers the core gives alone (static routes, rejected
requests) are not in it: fastloop_requests_total counts every answer.

The metrics listener runs in threads of the supervisor; a worker forked from it closes its
copy of the listening socket at once (os.register_at_fork), so only the supervisor answers.
Those threads take no lock a worker could need after the fork: they log nothing and print
nothing (a failed scrape gets a 500, no traceback).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ._durations import bucket_labels
from .listen import StartupError, bind_tcp
from .server import merge

__all__ = ["render", "bind_metrics", "MetricsServer", "SupervisorMetrics", "Snapshots", "SnapshotWriter",
           "serve_server_metrics", "CONTENT_TYPE", "SNAPSHOT_INTERVAL"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SNAPSHOT_INTERVAL = 0.5   # seconds between two snapshots of a worker's counters
READ_TIMEOUT = 5.0        # a scraper that sends nothing for this long is dropped

# stats() key -> (metric name, help); every one is a counter.
COUNTERS = (
    ("accepted", "accepted", "Connections accepted."),
    ("closed", "closed", "Connections closed."),
    ("requests", "requests", "Requests answered."),
    ("bytes_in", "received_bytes", "Bytes received from clients."),
    ("bytes_out", "sent_bytes", "Bytes sent to clients."),
    ("parse_errors", "parse_errors", "Requests that did not parse."),
    ("shed", "shed_connections", "Connections closed at once for lack of descriptors (EMFILE)."),
    ("handed_off", "handed_off_connections", "Connections an acceptor thread handed to a loop."),
)
# stats() key -> (metric name, label, help): counters by status, kind or errno.
LABELLED = (
    ("rejected", "rejected_requests", "status", "Requests the core answered with an error status."),
    ("timeouts", "timeouts", "kind", "Connections closed by a timeout, by kind."),
    ("accept_errors", "accept_errors", "errno", "accept() failures, by errno."),
    ("io_errors", "io_errors", "errno", "Read and write failures, by errno."),
)

Worker = Tuple[str, str, dict]  # (slot, pid, stats of that process)


def _labels(pairs: Iterable[Tuple[str, str]]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    text = ",".join(f'{name}="{escape(str(value))}"' for name, value in pairs)
    return "{" + text + "}" if text else ""


def render(workers: List[Worker], retired: Optional[dict] = None) -> str:
    """The exposition text for the live workers' stats (each a process's Server.stats()) plus
    the counters of retired workers (summed into the totals only)."""
    totals: dict = {}
    merge(totals, retired or {})
    for _, _, stats in workers:
        merge(totals, stats)
    out: List[str] = []

    def family(name: str, kind: str, help_: str, samples: List[Tuple[str, Any]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value}" for labels, value in samples)

    for key, name, help_ in COUNTERS:
        family(f"fastloop_{name}_total", "counter", help_ + " All workers, past ones included.",
               [("", totals.get(key, 0))])
        family(f"fastloop_worker_{name}_total", "counter", help_ + " Per live worker.",
               [(_labels((("worker", slot), ("pid", pid))), stats.get(key, 0))
                for slot, pid, stats in workers])
    for key, name, label, help_ in LABELLED:
        family(f"fastloop_{name}_total", "counter", help_ + " All workers, past ones included.",
               [(_labels(((label, k),)), v) for k, v in sorted(totals.get(key, {}).items())])
        family(f"fastloop_worker_{name}_total", "counter", help_ + " Per live worker.",
               [(_labels((("worker", slot), ("pid", pid), (label, k))), v)
                for slot, pid, stats in workers for k, v in sorted(stats.get(key, {}).items())])
    family("fastloop_open_connections", "gauge", "Connections open now, all live workers.",
           [("", sum(stats.get("open", 0) for _, _, stats in workers))])
    family("fastloop_worker_open_connections", "gauge", "Connections open now, per live worker.",
           [(_labels((("worker", slot), ("pid", pid))), stats.get("open", 0))
            for slot, pid, stats in workers])
    family("fastloop_workers", "gauge", "Worker processes whose counters are shown.",
           [("", len(workers))])
    durations = totals.get("request_durations", {})
    family("fastloop_request_duration_seconds", "histogram",
           "Time from a Python handler's call to its answer handed to the connection, by "
           "status class. All workers, past ones included.", _histogram(durations))
    return "\n".join(out) + "\n"


def _histogram(durations: dict) -> List[Tuple[str, Any]]:
    """The samples of fastloop_request_duration_seconds from Server.stats()'s
    request_durations (fastloop._durations: a count per bucket, made cumulative here)."""
    samples: List[Tuple[str, Any]] = []
    for cls in sorted(durations):
        counts = durations[cls].get("buckets", {})
        running = 0
        for le in bucket_labels():
            running += counts.get(le, 0)
            samples.append((f"_bucket{_labels((('status', cls), ('le', le)))}", running))
        status = _labels((("status", cls),))
        samples.append((f"_sum{status}", repr(float(durations[cls].get("sum", 0.0)))))
        samples.append((f"_count{status}", running))
    return samples


def process_stats(stats: dict) -> dict:
    """A Server.stats() without its per-thread breakdown: the process's counters."""
    return {k: v for k, v in stats.items() if k != "workers"}


# ---- the listener ------------------------------------------------------------------------------

_open_servers: List["MetricsServer"] = []


def _close_in_child() -> None:
    # A forked worker must not keep the metrics port open: only the process that serves it may.
    for server in _open_servers:
        server.httpd.socket.close()
    _open_servers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT
    server_version = "fastloop-metrics"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        try:
            body = self.server.collect().encode("utf-8")  # type: ignore[attr-defined]
        except Exception:
            self.send_error(500)
            raise
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes are not access-logged


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True  # a scraper stuck mid-request never holds up the process's exit
    collect: Callable[[], str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Silent on purpose: this thread runs in the supervisor, which forks workers, and a
        # fork while it held the stderr lock would leave that lock held in the worker.
        pass


def bind_metrics(address: str, port: int) -> socket.socket:
    """The metrics listener's socket on (address, port), bound with the server's own before
    anything is imported or forked, so a port that cannot be had is a StartupError (one line,
    exit status 3) and not a failure once serving. The caller owns it."""
    try:
        sock = bind_tcp(address, port, 1, False, 64)[0]
    except StartupError as exc:
        raise StartupError(f"metrics listener: {exc}") from None
    sock.setblocking(True)  # socketserver accepts after select() says a client is there
    return sock


class MetricsServer:
    """GET /metrics on the listening socket sock (bind_metrics()), answered with collect()'s
    text, from a daemon thread. close() stops it and closes sock."""

    def __init__(self, sock: socket.socket, collect: Callable[[], str]) -> None:
        self.httpd = _HTTPServer(sock.getsockname(), _Handler, bind_and_activate=False)
        self.httpd.socket.close()  # the one socketserver made: ours is bound already
        self.httpd.socket = sock
        self.httpd.collect = collect
        host, self.port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        self.url = f"http://{host}:{self.port}/metrics"
        _open_servers.append(self)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.25,),
                                       name="fastloop-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self in _open_servers:
            _open_servers.remove(self)
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5.0)


def serve_server_metrics(server: Any, sock: socket.socket) -> MetricsServer:
    """The metrics listener of a single server process (workers=1), on sock."""
    return MetricsServer(sock, lambda: render(
        [("0", str(os.getpid()), process_stats(server.stats()))]))


# ---- snapshots of supervised workers ----------------------------------------------------------

class Snapshots:
    """The supervisor's side: a private directory of one snapshot file per worker pid, and the
    counters of the workers that are gone. live() says which pids are workers now, by slot."""

    def __init__(self, live: Callable[[], Dict[int, int]]) -> None:
        self.live = live
        self.dir = tempfile.mkdtemp(prefix="fastloop-metrics-")
        self.retired: dict = {}
        self._lock = threading.Lock()  # scrapes run in threads of their own

    def path(self, pid: int) -> str:
        return os.path.join(self.dir, f"{pid}.json")

    def collect(self) -> str:
        with self._lock:
            live = self.live()
            workers: List[Worker] = []
            for name in sorted(os.listdir(self.dir)):
                stem, dot, ext = name.partition(".")
                if ext != "json" or not stem.isdigit():
                    continue  # a snapshot being written (*.tmp)
                pid = int(stem)
                stats = self._read(pid)
                if pid in live:
                    if stats is not None:
                        workers.append((str(live[pid]), stem, stats))
                elif not _alive(pid):
                    # Gone, and its last snapshot written: count it once, in the totals.
                    merge(self.retired, stats or {})
                    os.unlink(self.path(pid))
            workers.sort(key=lambda w: (int(w[0]), int(w[1])))
            return render(workers, self.retired)

    def _read(self, pid: int) -> Optional[dict]:
        try:
            with open(self.path(pid), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def writer(self, server: Any) -> "SnapshotWriter":
        """Called in a worker, after fork: starts writing this process's snapshots."""
        return SnapshotWriter(server, self.path(os.getpid()))

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class SupervisorMetrics:
    """The supervisor's metrics: the listener, and the snapshots its workers write."""

    def __init__(self, supervisor: Any, sock: socket.socket) -> None:
        children = supervisor.children  # pid -> _Child, changed by the supervisor's own thread
        # dict() copies in one step under the GIL, so a scrape sees one consistent set.
        self.snapshots = Snapshots(lambda: {pid: c.slot for pid, c in dict(children).items()})
        try:
            self.server = MetricsServer(sock, self.snapshots.collect)
        except BaseException:
            self.snapshots.close()
            raise
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()
        self.snapshots.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SnapshotWriter:
    """The worker's side: a daemon thread writing server's counters to path every
    SNAPSHOT_INTERVAL seconds; close() writes the last one (call it after the server stopped)."""

    def __init__(self, server: Any, path: str) -> None:
        self.server = server
        self.path = path
        self._done = threading.Event()
        self.write()
        self._thread = threading.Thread(target=self._run, name="fastloop-snapshots", daemon=True)
        self._thread.start()

    def write(self) -> None:
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(process_stats(self.server.stats()), f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # the supervisor removed the directory: it is stopping

    def _run(self) -> None:
        while not self._done.wait(SNAPSHOT_INTERVAL):
            self.write()

    def close(self) -> None:
        self._done.set()
        self._thread.join(SNAPSHOT_INTERVAL + 1.0)
        self.write()
