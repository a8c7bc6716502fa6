"""Runs the Autobahn|Testsuite fuzzing client against a WebSocket server and prints its summary.

    python benchmarks/autobahn.py ws://127.0.0.1:9001 [--cases 1.* 13.1.*] [--timeout 900]
    python benchmarks/autobahn.py --echo-websockets      # check the harness on a reference peer

autobahntestsuite runs on Python 2.7 only: the script finds one (pyenv's versions/2.7.*, then
python2.7 on PATH), makes a virtualenv for it under benchmarks/.build/autobahn (gitignored) and
pip-installs autobahntestsuite there once. Without a 2.7 interpreter it prints why and exits 0,
so CI can call it unconditionally. `wstest -m fuzzingclient` then runs the cases given (all 517
by default, one wstest per section so each reports as it ends) against the URL, its HTML and
JSON reports go to benchmarks/.build/autobahn/reports/<agent>, and the summary is one line per
behaviour kind (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED), then the cases that were
not OK, then one machine-readable line. A section that overruns --batch-timeout is cut (and
said so); --timeout bounds the whole run. The exit status is 1 when a case FAILED or was cut.

--echo-websockets starts an echo server of the `websockets` library on 127.0.0.1 (when it is
installed), runs the suite against it and stops it: a way to see the harness work before
fastloop serves WebSockets. --echo-engine does the same with ws_engine_echo.py, fastloop's
protocol engine (its Python view) under asyncio: the engine's conformance before the loops use
it. --echo-fastloop runs it against fastloop itself: ws_echo_asgi.py, an ASGI echo application
served by the loops. Every run is bounded by --timeout; the server process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
WORK = HERE / ".build" / "autobahn"
KINDS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# The last versions that still run on, and install for, Python 2.7.
VIRTUALENV_REQ = "virtualenv<20.16"
AUTOBAHN_REQ = "autobahntestsuite"


def find_python27() -> Optional[str]:
    """pyenv's newest 2.7, else python2.7 on PATH, else None."""
    pyenv = shutil.which("pyenv")
    roots = []
    if pyenv:
        try:
            roots.append(subprocess.run([pyenv, "root"], stdout=subprocess.PIPE, text=True, timeout=30,
                                        check=True).stdout.strip())
        except (subprocess.SubprocessError, OSError):
            pass
    roots.append(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")))
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "versions", "2.7.*", "bin", "python2.7")))
        if found:
            return found[-1]
    return shutil.which("python2.7")


def wstest(python27: str, timeout: float) -> Path:
    """The virtualenv's wstest, installing it the first time."""
    venv = WORK / "venv"
    exe = venv / "bin" / "wstest"
    if exe.exists():
        return exe
    WORK.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    # virtualenv goes into a private folder (not the interpreter's site-packages) just to make
    # the environment; the environment then holds autobahntestsuite and its Twisted.
    tool = WORK / "virtualenv-tool"
    if not (venv / "bin" / "python").exists():
        if subprocess.run([python27, "-m", "virtualenv", "--version"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            env = None
        else:
            subprocess.run([python27, "-m", "pip", "install", "-q", "--target", str(tool), VIRTUALENV_REQ],
                           check=True, timeout=max(1.0, deadline - time.monotonic()))
            env = dict(os.environ, PYTHONPATH=str(tool))
        subprocess.run([python27, "-m", "virtualenv", "-q", str(venv)], check=True, env=env,
                       timeout=max(1.0, deadline - time.monotonic()))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", AUTOBAHN_REQ], check=True,
                   timeout=max(1.0, deadline - time.monotonic()))
    return exe


def write_spec(path: Path, url: str, agent: str, cases: List[str], exclude: List[str], outdir: Path) -> None:
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    path.write_text(json.dumps(spec, indent=2))


def summarize(index: Path, agent: str) -> Dict[str, List[str]]:
    """Case ids by behaviour kind, from the fuzzing client's index.json."""
    results = json.loads(index.read_text())[agent]
    by_kind: Dict[str, List[str]] = {k: [] for k in KINDS}

    def key(case: str) -> List[int]:
        return [int(part) for part in case.split(".")]

    for case in sorted(results, key=key):
        by_kind.setdefault(results[case]["behavior"], []).append(case)
    return by_kind


# The suite's sections, run one wstest each by default (as is each --cases pattern): a report per
# section as it ends, and a section that overruns --batch-timeout is cut without losing the others.
# The compression sections (90 and 126 cases of 1000 messages each) go by subsection.
SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
SECTIONS += [f"12.{i}.*" for i in range(1, 6)] + [f"13.{i}.*" for i in range(1, 8)]


def run_batch(exe: Path, url: str, agent: str, cases: List[str], exclude: List[str], outdir: Path,
              timeout: float) -> Optional[Dict[str, List[str]]]:
    """One wstest run; its case ids by behaviour kind, or None when it overran timeout."""
    outdir.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "fuzzingclient.json"
        write_spec(spec, url, agent, cases, exclude, outdir)
        try:
            subprocess.run([str(exe), "-m", "fuzzingclient", "-s", str(spec)], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            return None
    if not (outdir / "index.json").exists():
        return None  # wstest was stopped from outside before its report
    return summarize(outdir / "index.json", agent)


def run_suite(url: str, agent: str, cases: List[str], exclude: List[str], timeout: float,
              batch_timeout: float) -> int:
    python27 = find_python27()
    if python27 is None:
        print("autobahn: skipped: no Python 2.7 interpreter (pyenv versions/2.7.* or python2.7); "
              "autobahntestsuite runs on 2.7 only")
        return 0
    started = time.monotonic()
    exe = wstest(python27, timeout)
    outdir = WORK / "reports" / agent
    shutil.rmtree(outdir, ignore_errors=True)
    batches = [[pattern] for pattern in (SECTIONS if cases == ["*"] else cases)]
    by_kind: Dict[str, List[str]] = {k: [] for k in KINDS}
    cut: List[str] = []
    for n, batch in enumerate(batches):
        left = min(batch_timeout, timeout - (time.monotonic() - started))
        got = run_batch(exe, url, agent, batch, exclude, outdir / str(n), left) if left > 1 else None
        if got is None:
            cut += batch
            print(f"autobahn: {' '.join(batch)}: cut after {max(left, 0):.0f} s", flush=True)
            continue
        for kind, ids in got.items():
            by_kind.setdefault(kind, []).extend(ids)
        print(f"autobahn: {' '.join(batch)}: " + " ".join(f"{k}={len(v)}" for k, v in got.items() if v),
              flush=True)
    total = sum(len(v) for v in by_kind.values())
    print(f"autobahn: {agent} at {url}: {total} cases in {time.monotonic() - started:.0f} s "
          f"(reports in {outdir})")
    for kind in by_kind:
        print(f"  {kind:<14} {len(by_kind[kind])}")
    for kind in by_kind:
        if kind != "OK" and by_kind[kind]:
            print(f"  {kind}: {' '.join(by_kind[kind])}")
    if cut:
        print(f"  not run to the end (time): {' '.join(cut)}")
    print("autobahn " + " ".join([f"agent={agent}", f"cases={total}"] +
                                 [f"{k}={len(v)}" for k, v in by_kind.items()] + [f"cut={len(cut)}"]))
    return 1 if by_kind.get("FAILED") or cut else 0


ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=2 ** 24, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_echo_server(argv: List[str], agent: str, cases: List[str], exclude: List[str], timeout: float,
                    batch_timeout: float) -> int:
    """Starts an echo server (argv + a free port; it prints "ready"), runs the suite on it."""
    port = free_port()
    # Its stderr is dropped: a reference server logs every protocol error the suite provokes.
    server = subprocess.Popen(argv + [str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            print(f"autobahn: the {agent} echo server did not start")
            return 1
        return run_suite(f"ws://127.0.0.1:{port}", agent, cases, exclude, timeout, batch_timeout)
    finally:
        server.kill()  # by its PID: the one process this script started
        server.wait()


def echo_websockets(cases: List[str], exclude: List[str], timeout: float, batch_timeout: float) -> int:
    try:
        import websockets
    except ImportError:
        print("autobahn: skipped: --echo-websockets needs `pip install websockets`")
        return 0
    return run_echo_server([sys.executable, "-c", ECHO_SERVER], f"websockets-{websockets.__version__}",
                           cases, exclude, timeout, batch_timeout)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", help="ws://host:port/path of the server under test")
    ap.add_argument("--agent", default="fastloop", help="the server's name in the reports")
    ap.add_argument("--cases", nargs="+", default=["*"],
                    help="case ids or patterns, one wstest each (default: all, by section)")
    ap.add_argument("--exclude", nargs="+", default=[], help="case ids or patterns to leave out")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for install and run together")
    ap.add_argument("--batch-timeout", type=float, default=900, help="seconds for one section of cases")
    ap.add_argument("--echo-websockets", action="store_true",
                    help="run against an echo server of the websockets library (started here)")
    ap.add_argument("--echo-engine", action="store_true",
                    help="run against ws_engine_echo.py: fastloop's protocol engine under asyncio")
    ap.add_argument("--echo-fastloop", action="store_true",
                    help="run against ws_echo_asgi.py: fastloop serving an ASGI echo application")
    args = ap.parse_args(argv)
    if args.echo_websockets:
        return echo_websockets(args.cases, args.exclude, args.timeout, args.batch_timeout)
    if args.echo_engine:
        return run_echo_server([sys.executable, str(HERE / "ws_engine_echo.py")], "fastloop-engine",
                               args.cases, args.exclude, args.timeout, args.batch_timeout)
    if args.echo_fastloop:
        return run_echo_server([sys.executable, str(HERE / "ws_echo_asgi.py")], "fastloop",
                               args.cases, args.exclude, args.timeout, args.batch_timeout)
    if not args.url:
        ap.error("a ws:// URL (or --echo-websockets) is needed")
    return run_suite(args.url, args.agent, args.cases, args.exclude, args.timeout, args.batch_timeout)


if __name__ == "__main__":
    sys.exit(main())
