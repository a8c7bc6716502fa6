"""Instructions per request, counted by callgrind: the C baseline against fastloop.

Timings drift with the load of the machine; instruction counts do not. Each server
runs under ``valgrind --tool=callgrind`` twice, serving exactly N1 and then N2
requests from an exact-count client, and is stopped by SIGTERM (callgrind writes
its counts when the process exits). What a run does once -- interpreter startup,
imports, bind, shutdown -- is the same in both runs and cancels:

    instructions/request = (I2 - I1) / (N2 - N1)

Servers (each alone in its process, at most one running at a time):
  baseline         baseline/epoll_server.c, the syscalls-plus-memmem floor
  fastloop-static  fastloop_hello_server.py: app.static("/"), answered in C
  fastloop-py      fastloop_hello_server.py --python: @app.route("/") returning a Response
  fastloop-wsgi    fastloop_hello_server.py --wsgi: apps.wsgi_app under fastloop.wsgi.WSGIApp
  fastloop-wsgi-json  the same, GET /json (the JSON route of that application)
  bjoern           apps.wsgi_app under bjoern (GET /), run by --venv's Python, if installed there
  bjoern-json      the same, GET /json
  fastloop-asgi    fastloop_hello_server.py --asgi: the raw ASGI hello application
  uvicorn-asgi     the same application under uvicorn (uvloop, httptools), if installed
  fastloop-fastapi fastloop_hello_server.py --fastapi: apps.py's FastAPI app, GET /json
  uvicorn-fastapi  the same FastAPI app under uvicorn (uvloop, httptools), if installed
Modes:
  keepalive        one request at a time on each of --connections connections
  pipelined        --pipeline requests in flight on each connection

What is counted: every user-space instruction of the server process, all threads
and libraries included (libc, libpython). The kernel's work inside syscalls is
not: this is the cost a server adds on top of its syscalls, and a server that
makes more syscalls per request costs more than this shows (core_vs_baseline.py
times the whole CPU cost). With one keep-alive connection (the default) every
request takes the same path through the baseline and the static route, and their
figures repeat to within 0.01%. The Python route's repeat to within about 2%: its
worker is slow enough that whether a read after a response finds the client's
next request or EAGAIN (one more wakeup) depends on timing. More connections, or
pipelining, let the client's timing decide how many requests one wakeup serves.
The Python servers run with PYTHONHASHSEED=0, or dict lookups at startup would
differ between the two runs by enough not to cancel (about 0.5M instructions).

The client is h2load (Debian: apt-get install nghttp2-client) if it is on PATH,
else a small built-in Python client that sends the same number of requests.
--profile K also prints the K functions that cost the most per request, from
``callgrind_annotate`` on both runs, diffed the same way. callgrind_annotate
counts a recursive function's inclusive cost once per level, so the inclusive
figures of the Python interpreter's eval loop are overstated.

Asserts nothing: the numbers are for reading. Linux only (valgrind, taskset).
--duration does not apply: the runs are sized by --requests.

    python benchmarks/callgrind_per_request.py
    python benchmarks/callgrind_per_request.py --modes keepalive --profile 15 --keep cg-out
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import _harness as h
from baseline.build import build_baseline
from core_vs_baseline import fastloop_problem

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ("baseline", "fastloop-static", "fastloop-py", "fastloop-wsgi", "fastloop-wsgi-json",
           "bjoern", "bjoern-json", "fastloop-asgi", "uvicorn-asgi", "fastloop-fastapi",
           "uvicorn-fastapi")
# Run by the peers' Python (--venv): bjoern is a peer of the suite, not a dependency.
VENV_SERVERS = ("bjoern", "bjoern-json")
MODES = ("keepalive", "pipelined")
# fastloop_hello_server.py's arguments for each
FASTLOOP_ARGS = {"fastloop-static": [], "fastloop-py": ["--python"], "fastloop-wsgi": ["--wsgi"],
                 "fastloop-wsgi-json": ["--wsgi"], "fastloop-asgi": ["--asgi"],
                 "fastloop-fastapi": ["--fastapi"]}
# The path each server is asked for: the FastAPI ones serve the JSON endpoint, as in
# `python -m benchmarks` (its json scenario), as do the WSGI ones named -json; the others
# their hello answer.
PATHS = {"fastloop-fastapi": "/json", "uvicorn-fastapi": "/json", "fastloop-wsgi-json": "/json",
         "bjoern-json": "/json"}
CORE_SO = ROOT / "fastloop" / ("_core" + sysconfig.get_config_var("EXT_SUFFIX"))
# A fixed string hash: with a random one (the default), the same dict lookups at startup
# probe more or fewer slots from run to run, about 0.5M instructions of difference between
# two runs that would not cancel.
SERVER_ENV = {**os.environ, "PYTHONHASHSEED": "0"}


# -- servers under callgrind ---------------------------------------------------


def server_command(name: str, port: int, out_file: Path, args: argparse.Namespace) -> list[str]:
    if name == "baseline":
        target = [str(build_baseline()), str(port)]
    elif name in VENV_SERVERS:
        # The venv's interpreter itself (a symlink, not a launcher that would exec).
        target = [str(venv_python(args)), str(HERE / "apps.py"), "bjoern", str(port)]
    elif name in ("uvicorn-asgi", "uvicorn-fastapi"):
        app = "apps:fastapi_app" if name == "uvicorn-fastapi" else "fastloop_hello_server:hello_asgi"
        target = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE),
                  app, "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--no-access-log", "--lifespan", "off",
                  "--loop", "uvloop", "--http", "httptools"]
    else:
        # sys.executable, not "python": a launcher script (a pyenv shim, say) would exec
        # the interpreter, and valgrind stops counting at an exec it does not trace.
        target = [sys.executable, str(HERE / "fastloop_hello_server.py"), str(port),
                  "--runtime-threads", str(args.workers), *FASTLOOP_ARGS[name]]
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *target]


def venv_python(args: argparse.Namespace) -> Path:
    return (args.venv or ROOT / "benchmarks" / ".venv") / "bin" / "python"


def core_digest() -> str | None:
    """A short hash of fastloop's compiled core: if someone rebuilds it between the
    N1 and N2 runs, the difference of their counts means nothing, and this shows it."""
    try:
        return hashlib.sha256(CORE_SO.read_bytes()).hexdigest()[:12]
    except OSError:
        return None


def callgrind_total(out_file: Path) -> int | None:
    """The instruction count callgrind wrote at exit ("summary:" or "totals:"), or None."""
    try:
        text = out_file.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else None


# -- exact-count clients -------------------------------------------------------


def run_h2load(port: int, n: int, connections: int, depth: int, timeout: float,
               path: str = "/") -> dict:
    """h2load --h1: N requests over CONNECTIONS connections, DEPTH pipelined on each."""
    cmd = ["h2load", "--h1", "-n", str(n), "-c", str(connections), "-m", str(depth),
           f"http://127.0.0.1:{port}{path}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # run() has killed h2load by its PID
        return {"client_error": f"h2load did not finish in {timeout:.0f} s"}
    req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", res.stdout)
    ok = re.search(r"status codes: (\d+) 2xx", res.stdout)
    if res.returncode != 0 or not req or not ok:
        tail = (res.stdout + res.stderr)[-1000:]
        return {"client_error": f"h2load exited {res.returncode}: {tail}"}
    return {"succeeded": int(req.group(1)), "status_2xx": int(ok.group(1))}


def run_python_client(port: int, n: int, connections: int, depth: int, timeout: float,
                      path: str = "/") -> dict:
    """The fallback client: the same exact count and pipelining as h2load, in Python.

    Connection i sends its share of N (h2load's split), keeping at most DEPTH
    requests unanswered. Responses are framed by Content-Length, which both
    servers always send for this route."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    shares = [n // connections + (i < n % connections) for i in range(connections)]
    sel = selectors.DefaultSelector()
    state = {}
    counts = {"succeeded": 0, "status_2xx": 0}
    deadline = time.monotonic() + timeout
    try:
        for share in shares:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            state[s] = {"left_to_send": share, "waiting": 0, "buf": b""}
            sel.register(s, selectors.EVENT_READ)
        while state:
            if time.monotonic() > deadline:
                return {**counts, "client_error": f"python client timed out after {timeout:.0f} s"}
            for s, st in state.items():  # top up each connection to DEPTH in flight
                k = min(depth - st["waiting"], st["left_to_send"])
                if k > 0:
                    s.sendall(request * k)  # small; fits the empty send buffer
                    st["waiting"] += k
                    st["left_to_send"] -= k
            for key, _ in sel.select(timeout=1.0):
                s, st = key.fileobj, state[key.fileobj]
                data = s.recv(65536)
                if not data:
                    return {**counts, "client_error": "server closed a connection early"}
                st["buf"] += data
                while (end := st["buf"].find(b"\r\n\r\n")) >= 0:
                    head = st["buf"][:end].decode("latin-1")
                    m = re.search(r"(?im)^content-length:\s*(\d+)", head)
                    size = end + 4 + (int(m.group(1)) if m else 0)
                    if len(st["buf"]) < size:
                        break
                    st["buf"] = st["buf"][size:]
                    st["waiting"] -= 1
                    counts["succeeded"] += 1
                    counts["status_2xx"] += head.split(" ", 2)[1].startswith("2")
                if not st["waiting"] and not st["left_to_send"]:
                    sel.unregister(s)
                    s.close()
                    del state[s]
    except OSError as e:
        return {**counts, "client_error": f"python client: {e}"}
    finally:
        for s in state:
            s.close()
        sel.close()
    return counts


# -- one run, one pair ---------------------------------------------------------


def run_once(server: str, depth: int, n: int, out_file: Path, args: argparse.Namespace) -> dict:
    """Start SERVER under callgrind, send it exactly N requests, stop it by SIGTERM;
    return the instruction count and what the client saw."""
    own = server != "baseline" and server not in VENV_SERVERS
    run: dict = {"n": n, "core": core_digest() if own else None}
    client = run_h2load if args.client == "h2load" else run_python_client
    for attempt in (1, 2):  # a concurrent rebuild of fastloop can break one start
        port = h.free_port()
        cmd = server_command(server, port, out_file, args)
        try:
            srv = h.start_server(server, cmd, port, args.server_core, cwd=ROOT, env=SERVER_ENV,
                                 timeout=args.start_timeout)
            break
        except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
            if attempt == 2:
                run["error"] = f"start failed: {str(e)[-1500:]}"
                return run
            time.sleep(3)
    try:
        run.update(client(port, n, args.connections, depth, args.client_timeout,
                          PATHS.get(server, "/")))
    finally:
        # SIGTERM: both servers exit cleanly on it, and callgrind then writes its file.
        # Wait here rather than in stop_server(), which deletes the log we still read;
        # it then only SIGKILLs a server still alive (which leaves no counts: an error).
        with contextlib.suppress(ProcessLookupError):
            os.kill(srv.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            srv.proc.wait(args.stop_timeout)
        output = srv.output()
        run["server_exit"] = h.stop_server(srv, timeout=1.0)
    m = re.search(r"'requests': (\d+)", output)  # fastloop prints its stats at exit
    if m:
        run["server_requests"] = int(m.group(1))
    run["ir"] = callgrind_total(out_file)
    if run["ir"] is None:
        run["error"] = f"no callgrind totals in {out_file.name}; server output:\n{output[-1500:]}"
    elif run.get("client_error") or run.get("succeeded") != n or run.get("status_2xx") != n:
        run["error"] = run.get("client_error") or f"client: {run.get('succeeded')} of {n} answered"
    return run


def measure(server: str, mode: str, outdir: Path, args: argparse.Namespace) -> dict:
    """The two runs of SERVER in MODE and the per-request figure from them."""
    depth = args.pipeline if mode == "pipelined" else 1
    n1, n2 = args.requests
    record: dict = {
        "bench": "callgrind_per_request", "server": server, "mode": mode,
        "connections": args.connections, "pipeline": depth, "client": args.client,
        "workers": args.workers if server.startswith("fastloop") else 1, "n1": n1, "n2": n2,
    }
    runs = [run_once(server, depth, n, outdir / f"{server}-{mode}-{n}.callgrind", args)
            for n in (n1, n2)]
    record["ir1"], record["ir2"] = runs[0].get("ir"), runs[1].get("ir")
    if runs[0].get("core") is not None:
        record["core"] = runs[0]["core"]
        if runs[1].get("core") != runs[0]["core"]:
            record["error"] = "fastloop's _core was rebuilt between the two runs"
    for i, run in enumerate(runs, 1):
        if "server_requests" in run:
            record[f"server_requests{i}"] = run["server_requests"]
        if run.get("server_exit") not in (0, None):
            record[f"server_exit{i}"] = run["server_exit"]
        if "error" in run:
            record.setdefault("error", f"run {i} (n={run['n']}): {run['error']}")
    if record["ir1"] is not None and record["ir2"] is not None and "error" not in record:
        per_req = (record["ir2"] - record["ir1"]) / (n2 - n1)
        record["ir_per_req"] = round(per_req, 1)
        record["ir_fixed"] = round(record["ir1"] - per_req * n1)  # startup + shutdown
        record["_files"] = [outdir / f"{server}-{mode}-{n}.callgrind" for n in (n1, n2)]
    return record


# -- per-function profile --------------------------------------------------------

_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+)$")


def split_entry(entry: str) -> tuple[str, str | None]:
    """"path/file.c:func'2 [path/lib.so]" -> ("func", "lib.so"): the function without
    callgrind's recursion-depth suffix, and the file name of its object, if given."""
    m = re.match(r"^(.*?)(?: \[([^\[\]]*)\])?$", entry)
    body, obj = m.group(1), m.group(2)
    _, sep, func = body.partition(":")
    func = re.sub(r"'\d+$", "", func if sep else body)
    return func, (Path(obj).name if obj else None)


def demangle(func: str) -> str:
    """A Cython cdef function's C name as a dotted Python name:
    "__pyx_f_8fastloop_5_core_6Worker_conn_read" -> "fastloop._core.Worker.conn_read".
    Other names are returned as they are."""
    if not func.startswith("__pyx_f_"):
        return func
    rest, parts = func[len("__pyx_f_"):], []
    while (m := re.match(r"(\d+)", rest)) and len(rest) > len(m.group(1)) + int(m.group(1)):
        start = len(m.group(1))
        parts.append(rest[start:start + int(m.group(1))])
        rest = rest[start + int(m.group(1)) + 1:]  # and the "_" after each part
    return ".".join(parts + [rest])


def annotate(out_file: Path, inclusive: bool) -> tuple[dict[str, int], dict[str, str]]:
    """Cost per function in OUT_FILE, from callgrind_annotate (all functions), and the
    object each is in. callgrind_annotate lists a function once per source file it has
    code from (inlined headers) and once per recursion depth: self costs of one name add
    up, inclusive ones overlap, so the largest is kept."""
    cmd = ["callgrind_annotate", "--threshold=100", "--auto=no",
           f"--inclusive={'yes' if inclusive else 'no'}", str(out_file)]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    costs: dict[str, int] = {}
    objects: dict[str, str] = {}
    for line in text.splitlines():
        m = _ANNOTATE_LINE.match(line)
        if not m or m.group(2) == "PROGRAM TOTALS":
            continue
        func, obj = split_entry(m.group(2))
        cost = int(m.group(1).replace(",", ""))
        costs[func] = max(costs.get(func, 0), cost) if inclusive else costs.get(func, 0) + cost
        if obj:
            objects.setdefault(func, obj)
    return costs, objects


def profile(record: dict, top: int) -> str:
    """Markdown: the TOP functions by self and by inclusive instructions per request."""
    f1, f2 = record["_files"]
    dn = record["n2"] - record["n1"]
    total = record["ir_per_req"]
    per_req, objects = {}, {}
    for inclusive in (False, True):
        (c1, o1), (c2, o2) = annotate(f1, inclusive), annotate(f2, inclusive)
        per_req[inclusive] = {k: (c2.get(k, 0) - c1.get(k, 0)) / dn for k in c1.keys() | c2.keys()}
        objects.update(o1)
        objects.update(o2)
    selfs, incls = per_req[False], per_req[True]
    # Stack roots (thread start, the eval loop that runs Worker.run, the worker loop itself)
    # include nearly everything and would fill the inclusive ranking: name them once instead.
    roots = sorted((f for f, c in incls.items() if c >= 0.9 * total), key=lambda f: -incls[f])
    lines = [f"\n{record['server']} {record['mode']}: top {top} functions per request "
             f"(of {total:,.0f} instructions/request)"]

    def name(func: str) -> str:
        return f"`{demangle(func)}`" + (f" ({objects[func]})" if func in objects else "")

    for inclusive, label in ((False, "self"), (True, "inclusive")):
        lines += ["", f"| by {label} | self Ir/req | inclusive Ir/req | function |",
                  "| ---: | ---: | ---: | --- |"]
        ranked = sorted((f for f in per_req[inclusive] if not inclusive or f not in roots),
                        key=lambda f: -per_req[inclusive][f])[:top]
        for rank, func in enumerate(ranked, 1):
            lines.append(f"| {rank} | {selfs.get(func, 0.0):,.1f} | {incls.get(func, 0.0):,.1f} "
                         f"| {name(func)} |")
    lines.append(f"\nLeft out of the inclusive ranking, as they include >= 90% of the total: "
                 f"{', '.join(f'`{demangle(f)}`' for f in roots)}.")
    return "\n".join(lines)


# -- reporting -------------------------------------------------------------------


def markdown(records: list[dict]) -> str:
    lines = ["| mode | server | instructions/request | ×baseline | fixed (startup+exit) |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in records:
        if "ir_per_req" in r:
            ratio = r.get("ratio_vs_baseline")
            ratio = "n/a" if ratio is None else f"{ratio:.2f}×"
            lines.append(f"| {r['mode']} | {r['server']} | {r['ir_per_req']:,.0f} | {ratio} "
                         f"| {r['ir_fixed']:,} |")
        else:
            lines.append(f"| {r['mode']} | {r['server']} | error | | |")
    return "\n".join(lines)


def split_list(items: list[str], allowed: tuple[str, ...], what: str,
               p: argparse.ArgumentParser) -> list[str]:
    """ITEMS split at commas too; an unknown one is a usage error."""
    out = [s for item in items for s in item.split(",") if s]
    for s in out:
        if s not in allowed:
            p.error(f"unknown {what} {s!r}; choose from {', '.join(allowed)}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--requests", type=int, nargs=2, default=[2000, 12000], metavar=("N1", "N2"),
                   help="requests in the short and the long run (default 2000 12000)")
    p.add_argument("--connections", type=int, default=1,
                   help="client connections (default 1: the most reproducible count)")
    p.add_argument("--pipeline", type=int, default=16, help="depth for 'pipelined' (default 16)")
    p.add_argument("--modes", nargs="+", default=list(MODES), metavar="MODE",
                   help="any of keepalive pipelined, space or comma separated (default: both)")
    p.add_argument("--servers", nargs="+", default=list(SERVERS), metavar="NAME",
                   help=f"any of {' '.join(SERVERS)} (default: all)")
    p.add_argument("--workers", type=int, default=1, help="fastloop event loops, runtime_threads (default 1)")
    p.add_argument("--client", choices=("auto", "h2load", "python"), default="auto",
                   help="h2load, the built-in Python client, or auto: h2load if found (default)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also print the top K functions per request, by self and inclusive cost")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the callgrind output files in DIR (default: a temporary directory)")
    p.add_argument("--venv", type=Path, metavar="DIR",
                   help="the peers' virtualenv, for bjoern (default: benchmarks/.venv)")
    p.add_argument("--server-core", type=int, default=0, help="core for the server (default 0)")
    p.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds for a server to start accepting under valgrind (default 120)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="seconds from SIGTERM to exit before SIGKILL (default 60)")
    p.add_argument("--client-timeout", type=float, default=120.0,
                   help="seconds for the client to finish one run (default 120)")
    args = p.parse_args(argv)
    n1, n2 = args.requests
    if not 0 < n1 < n2:
        p.error("--requests N1 N2 needs 0 < N1 < N2")
    if args.connections < 1 or args.pipeline < 1 or args.workers < 1 or n1 < args.connections:
        p.error("--connections, --pipeline, --workers >= 1, and N1 >= --connections")
    args.modes = split_list(args.modes, MODES, "mode", p)
    args.servers = split_list(args.servers, SERVERS, "server", p)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("valgrind", "taskset") + (("callgrind_annotate",) if args.profile else ()):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian: apt-get install valgrind util-linux)",
                  file=sys.stderr)
            return 2
    if args.client == "auto":
        args.client = "h2load" if shutil.which("h2load") else "python"
        if args.client == "python":
            print("h2load not found (Debian: nghttp2-client): using the Python client",
                  file=sys.stderr)
    elif args.client == "h2load" and shutil.which("h2load") is None:
        print("h2load not found (Debian: apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    servers = list(args.servers)
    if any(s != "baseline" for s in servers):
        problem = fastloop_problem()
        for _ in range(5):  # fastloop may be mid-rebuild: give it a moment
            if problem is None:
                break
            time.sleep(3)
            problem = fastloop_problem()
        if problem is not None:
            print(f"fastloop is not importable ({problem}): baseline only", file=sys.stderr)
            servers = [s for s in servers if s == "baseline"]
    for name in ("uvicorn-asgi", "uvicorn-fastapi"):
        if name in servers and importlib.util.find_spec("uvicorn") is None:
            print(f"uvicorn is not installed: {name} left out", file=sys.stderr)
            servers.remove(name)
    for name in ("fastloop-fastapi", "uvicorn-fastapi"):
        if name in servers and importlib.util.find_spec("fastapi") is None:
            print(f"fastapi is not installed: {name} left out", file=sys.stderr)
            servers.remove(name)
    for name in VENV_SERVERS:
        if name in servers and subprocess.run(
                [str(venv_python(args)), "-c", "import bjoern"], capture_output=True).returncode:
            print(f"bjoern is not importable by {venv_python(args)}: {name} left out",
                  file=sys.stderr)
            servers.remove(name)
    if "baseline" in servers:
        build_baseline()

    started = time.monotonic()
    records = []
    with tempfile.TemporaryDirectory(prefix="callgrind-per-request-") as tmp:
        outdir = args.keep or Path(tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        for mode in args.modes:
            base = None
            for server in servers:
                record = measure(server, mode, outdir, args)
                if server == "baseline":
                    base = record.get("ir_per_req")
                elif base and "ir_per_req" in record:
                    record["ratio_vs_baseline"] = round(record["ir_per_req"] / base, 3)
                h.emit({k: v for k, v in record.items() if not k.startswith("_")})
                records.append(record)
        print()
        print(markdown(records))
        if args.profile:
            for record in records:
                if "_files" in record:
                    print(profile(record, args.profile))
    print(f"\n{2 * len(records)} runs under callgrind in {time.monotonic() - started:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
