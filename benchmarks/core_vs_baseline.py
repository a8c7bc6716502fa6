"""fastloop against the C baseline (baseline/epoll_server.c), same settings.

For each scenario the two servers take turns, A B A B ... (--rounds times each),
so drift of the machine (frequency, page cache, a noisy neighbour) hits both
alike. Each run starts a fresh server pinned to --server-core, runs wrk pinned to
--client-core, and prints one JSON line. At the end a JSON summary line per
scenario and a Markdown table give, per server, the median requests/s and the
median server CPU time per request, and the fastloop/baseline ratio of each.

Scenarios:
  keepalive  one request at a time on each of --connections connections
  pipelined  --pipeline requests sent back to back on each connection
  close      "Connection: close": a new connection for every request

Asserts nothing: the numbers are for reading. Linux only (taskset, /proc).

    python benchmarks/core_vs_baseline.py --duration 5 --rounds 3
    python benchmarks/core_vs_baseline.py --only baseline --scenarios keepalive
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _harness as h
from baseline.build import build_baseline

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ("baseline", "fastloop")
SCENARIOS = ("keepalive", "pipelined", "close")


def fastloop_problem() -> str | None:
    """None if fastloop imports from this checkout (as the server script will
    import it), else the last line of the error."""
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import fastloop; "
        "fastloop.App; fastloop.Server"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT)], capture_output=True, text=True
    )
    if res.returncode == 0:
        return None
    lines = res.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {res.returncode}"


def server_command(name: str, port: int, args: argparse.Namespace) -> list[str]:
    if name == "baseline":
        return [str(build_baseline()), str(port)]
    script = HERE / "fastloop_hello_server.py"
    return [sys.executable, str(script), str(port), "--runtime-threads", str(args.workers)]


def wrk_options(scenario: str, args: argparse.Namespace) -> dict:
    if scenario == "pipelined":
        return {"script": h.LUA_DIR / "pipeline.lua", "script_args": [str(args.pipeline)]}
    if scenario == "close":
        return {"script": h.LUA_DIR / "close.lua"}
    return {}


def run_once(server: str, scenario: str, rnd: int, args: argparse.Namespace) -> dict:
    """Start SERVER, warm it up, measure one wrk run, stop it; return the record."""
    record = {
        "bench": "core_vs_baseline",
        "scenario": scenario,
        "server": server,
        "round": rnd,
        "connections": args.connections,
        "duration_s": args.duration,
        "pipeline": args.pipeline if scenario == "pipelined" else 1,
        "workers": args.workers if server == "fastloop" else 1,
    }
    port = h.free_port()
    url = f"http://127.0.0.1:{port}/"
    wrk_kw = {"core": args.client_core, "threads": args.wrk_threads, **wrk_options(scenario, args)}
    try:
        cmd = server_command(server, port, args)
        srv = h.start_server(server, cmd, port, args.server_core, cwd=ROOT)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        record["error"] = f"start failed: {e}"
        return record
    try:
        if args.warmup > 0:
            h.run_wrk(url, args.connections, args.warmup, **wrk_kw)
        cpu0 = srv.cpu_seconds()
        result = h.run_wrk(url, args.connections, args.duration, **wrk_kw)
        cpu = srv.cpu_seconds() - cpu0
        record.update(h.as_record(result))
        record["server_cpu_s"] = round(cpu, 3)
        record["server_cpu_us_per_req"] = (
            round(cpu * 1e6 / result.requests, 3) if result.requests else None
        )
    except (RuntimeError, ValueError) as e:
        record["error"] = str(e)
        record["server_output"] = srv.output()[-2000:]
    finally:
        record["server_exit"] = h.stop_server(srv)
    return record


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def summarize(records: list[dict], args: argparse.Namespace) -> list[dict]:
    """One summary per scenario: medians per server and fastloop/baseline ratios."""
    summaries = []
    for scenario in args.scenarios:
        s: dict = {"bench": "core_vs_baseline", "summary": True, "scenario": scenario}
        for server in SERVERS:
            runs = [r for r in records if r["scenario"] == scenario and r["server"] == server]
            s[f"{server}_runs"] = len(runs)
            s[f"{server}_median_rps"] = h.median([r.get("rps") for r in runs])
            s[f"{server}_median_cpu_us_per_req"] = h.median(
                [r.get("server_cpu_us_per_req") for r in runs]
            )
        s["ratio_rps"] = ratio(s["fastloop_median_rps"], s["baseline_median_rps"])
        s["ratio_cpu_us_per_req"] = ratio(
            s["fastloop_median_cpu_us_per_req"], s["baseline_median_cpu_us_per_req"]
        )
        summaries.append(s)
    return summaries


def markdown(summaries: list[dict]) -> str:
    lines = [
        "| scenario | server | median rps | median server CPU µs/req |",
        "| --- | --- | ---: | ---: |",
    ]
    for s in summaries:
        for server in SERVERS:
            if s[f"{server}_runs"]:
                lines.append(
                    f"| {s['scenario']} | {server} | {fmt(s[f'{server}_median_rps'], ',.0f')} "
                    f"| {fmt(s[f'{server}_median_cpu_us_per_req'], '.2f')} |"
                )
        if s["ratio_rps"] is not None or s["ratio_cpu_us_per_req"] is not None:
            lines.append(
                f"| {s['scenario']} | fastloop/baseline | {fmt(s['ratio_rps'], '.3f')}× "
                f"| {fmt(s['ratio_cpu_us_per_req'], '.3f')}× |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="runs per server and scenario (default 3)")
    p.add_argument("--pipeline", type=int, default=16, help="depth for 'pipelined' (default 16)")
    p.add_argument(
        "--scenarios", nargs="+", default=list(SCENARIOS), metavar="NAME",
        help="any of keepalive pipelined close, space or comma separated (default: all)",
    )
    p.add_argument("--only", choices=SERVERS, help="run one server only")
    p.add_argument(
        "--workers", type=int, default=1,
        help="fastloop event loops, runtime_threads (default 1; the baseline is always single-threaded)",
    )
    p.add_argument(
        "--warmup", type=int, default=1, help="unmeasured wrk seconds first, 0 for none (default 1)"
    )
    p.add_argument("--server-core", type=int, default=0, help="core for the server (default 0)")
    p.add_argument("--client-core", type=int, default=1, help="core for wrk (default 1)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (default 1)")
    args = p.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1:
        p.error("wrk takes whole seconds: --duration >= 1, --warmup >= 0; --rounds >= 1")
    args.scenarios = [s for item in args.scenarios for s in item.split(",") if s]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian: apt-get install wrk util-linux)", file=sys.stderr)
            return 2
    servers = [args.only] if args.only else list(SERVERS)
    if "fastloop" in servers:
        problem = fastloop_problem()
        if problem is not None:
            print(f"fastloop is not importable: {problem}", file=sys.stderr)
            if args.only == "fastloop":
                return 1
            print("running the baseline alone (as with --only baseline)", file=sys.stderr)
            servers = ["baseline"]
    if "baseline" in servers:
        build_baseline()  # compile once, before any timing

    records = []
    started = time.monotonic()
    for scenario in args.scenarios:
        for rnd in range(1, args.rounds + 1):
            for server in servers:  # A B A B ...: alternate, never batch
                record = run_once(server, scenario, rnd, args)
                h.emit(record)
                records.append(record)
    summaries = summarize(records, args)
    for s in summaries:
        h.emit(s)
    print()
    print(markdown(summaries))
    print(f"\n{len(records)} runs in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
