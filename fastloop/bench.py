"""`fastloop bench`: an HTTP/1.1 and WebSocket load generator that counts and explains.

The client loops are C, in an extension of their own (fastloop._bench.BenchLoop: one poller
per thread, edge-triggered, no GIL, latency in a log-linear histogram). This module turns
options into loops, runs them on threads, merges their counters and histograms into a
BenchResult, and formats the report: requests and rates, status codes, latency percentiles,
connections attempted / established / failed / closed by the server, errors by errno name with
their likely cause, TIME_WAIT before and after, and the new-connection rate the local port
range can sustain.

    from fastloop import bench
    result = bench.run("http://127.0.0.1:8080/", connections=50, duration=5)
    print(result.rps, result.connections["established"])

    fastloop bench -c 50 -d 10s http://127.0.0.1:8080/
    fastloop bench --no-keepalive -R 2000 -d 30s --json http://127.0.0.1:8080/
    fastloop bench -c 64 -d 10s --ws-message-size 64 ws://127.0.0.1:8080/echo
"""

from __future__ import annotations

import argparse
import errno as _errno
import ipaddress
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from . import doctor
from ._bench import BenchLoop, LatencyHistogram, bench_now_ns
from ._benchresult import ERROR_CAUSES, BenchResult, format_report

__all__ = ["BenchResult", "ERROR_CAUSES", "exit_status", "format_report", "main", "parse_duration",
           "run"]

Headers = Union[Sequence[Tuple[str, str]], Sequence[str], Dict[str, str]]


# ---- options -----------------------------------------------------------------------------

def parse_duration(text: Union[str, float, int]) -> float:
    """Seconds from 10, "10", "10s", "500ms", "2m" or "1h"."""
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
            break
    try:
        seconds = float(t) * scale
    except ValueError:
        raise ValueError(f"invalid duration {text!r}: use e.g. 10s, 500ms, 2m or 1h") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be positive")
    return seconds


def _parse_url(url: str) -> Tuple[str, str, int, str, str]:
    """(scheme, host, port, request target, Host header) of an http:// or ws:// URL."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "ws"):
        raise ValueError(f"only http:// and ws:// URLs are supported, not {parts.scheme}://")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return parts.scheme, parts.hostname, port, target, host_header


def _parse_sources(source: Union[None, str, Sequence[str]], family: int) -> List[str]:
    """Source addresses from a CIDR ("127.0.0.0/24": its usable hosts), a comma-separated
    list, or a list of addresses and CIDRs. Each must be of the target's family."""
    if not source:
        return []
    items = source.split(",") if isinstance(source, str) else list(source)
    out: List[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        net = ipaddress.ip_network(item, strict=False)
        hosts = [net.network_address] if net.num_addresses == 1 else list(
            net.hosts() if net.num_addresses > 2 else net)
        if len(out) + len(hosts) > 65536:
            raise ValueError("at most 65536 source addresses")
        out += [str(h) for h in hosts]
    want = 6 if family == socket.AF_INET6 else 4
    bad = [a for a in out if ipaddress.ip_address(a).version != want]
    if bad:
        raise ValueError(f"source {bad[0]} is not IPv{want} like the target")
    return out


def _header_pairs(headers: Optional[Headers]) -> List[Tuple[str, str]]:
    if not headers:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    pairs = []
    for h in headers:
        if isinstance(h, str):
            name, sep, value = h.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"a header is 'Name: value', not {h!r}")
            pairs.append((name.strip(), value.strip()))
        else:
            pairs.append((h[0], h[1]))
    return pairs


def _head_lines(request_line: str, host: str,
                pairs: List[Tuple[str, str]]) -> Tuple[List[str], set]:
    """The request line, then Host and User-Agent unless the caller's headers name them; and
    those names, lowercased."""
    names = {n.lower() for n, _ in pairs}
    lines = [request_line]
    if "host" not in names:
        lines.append(f"Host: {host}")
    if "user-agent" not in names:
        lines.append("User-Agent: fastloop-bench")
    return lines, names


def build_request(method: str, target: str, host: str, headers: Optional[Headers] = None,
                  body: Optional[bytes] = None, keepalive: bool = True) -> bytes:
    """One HTTP/1.1 request. Host and User-Agent unless given; Content-Length with a body (or
    for POST, PUT, PATCH); "Connection: close" without keep-alive."""
    pairs = _header_pairs(headers)
    lines, names = _head_lines(f"{method.upper()} {target} HTTP/1.1", host, pairs)
    lines += [f"{n}: {v}" for n, v in pairs]
    if "content-length" not in names and (body or method.upper() in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body or b'')}")
    if not keepalive and "connection" not in names:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


WS_KEY_PLACEHOLDER = "A" * 22 + "=="  # each connection writes its own key over it (ws.pyx)


def build_ws_handshake(target: str, host: str,
                       headers: Optional[Headers] = None) -> Tuple[bytes, int]:
    """The RFC 6455 upgrade request and the offset of its Sec-WebSocket-Key value, which the
    client loops replace with a fresh random key per connection."""
    pairs = _header_pairs(headers)
    lines, _ = _head_lines(f"GET {target} HTTP/1.1", host, pairs)
    lines += ["Upgrade: websocket", "Connection: Upgrade",
              f"Sec-WebSocket-Key: {WS_KEY_PLACEHOLDER}", "Sec-WebSocket-Version: 13"]
    lines += [f"{n}: {v}" for n, v in pairs]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head, head.index(WS_KEY_PLACEHOLDER.encode())


# ---- running ---------------------------------------------------------------------------------

def _resolve(host: str, port: int) -> Tuple[int, str]:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not info:
        raise OSError(_errno.EHOSTUNREACH, f"cannot resolve {host}")
    family, _, _, _, addr = info[0]
    return family, str(addr[0])  # an IP address: str for AF_INET and AF_INET6


def run(url: str, *, connections: int = 10, threads: int = 1,
        duration: Union[None, str, float] = None, requests: Optional[int] = None,
        method: str = "GET", headers: Optional[Headers] = None, body: Optional[bytes] = None,
        timeout: float = 10.0, connect_timeout: float = 3.0, keepalive: bool = True,
        pipeline: int = 1, rate: Optional[float] = None,
        source: Union[None, str, Sequence[str]] = None,
        local_ports: Optional[Tuple[int, int]] = None,
        ws_message_size: int = 64, ws_binary: bool = False,
        progress: Optional[Callable[[float, int, int], None]] = None,
        until: Optional[threading.Event] = None) -> BenchResult:
    """Runs a load test against url and returns its BenchResult.

    connections are spread over threads client loops. The run ends after duration (seconds or
    "10s"; default 10 s when requests is not given either) or once `requests` requests were
    made, whichever comes first. keepalive=False opens a connection per request; pipeline
    sends N requests back to back per connection; rate (requests/s across all connections)
    switches to a fixed schedule where latency counts from each request's due time. source
    (CIDR, comma list or list) binds connections to those addresses in turn; local_ports
    (lo, hi) restricts each socket's ephemeral ports (Linux >= 6.3, IP_LOCAL_PORT_RANGE).
    progress(elapsed_s, requests, failed) is called about once a second from this thread.
    until, once set (from another thread), ends the run early and cleanly: no new request
    starts, and the run returns once every request under way is answered or has failed. A
    test that stops its server under load sets it after the server is gone, so the client
    has read every answer the server wrote (a run that ends at its duration abandons the
    requests under way, which the server may still answer).

    A ws:// url switches to WebSocket mode: each connection does the RFC 6455 handshake, then
    sends one masked message of ws_message_size bytes (text, or binary with ws_binary) at a
    time and waits for its echo; "requests" are then round-trips.
    """
    if connections < 1 or threads < 1 or pipeline < 1:
        raise ValueError("connections, threads and pipeline must be at least 1")
    if requests is not None and requests < 1:
        raise ValueError("requests must be at least 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if rate and pipeline > 1:
        raise ValueError("--rate and --pipeline cannot be combined")
    if not keepalive and pipeline > 1:
        raise ValueError("--pipeline needs keep-alive")
    seconds = parse_duration(duration) if duration is not None else (None if requests else 10.0)
    if seconds is not None and seconds <= 0:
        raise ValueError("duration must be positive")
    scheme, host, port, target, host_header = _parse_url(url)
    ws: Dict[str, Any] = {}
    if scheme == "ws":
        if pipeline > 1 or not keepalive or body is not None or method.upper() != "GET":
            raise ValueError("a ws:// run sends one message at a time on kept connections: "
                             "no --pipeline, --no-keepalive, body or method")
        if ws_message_size < 0:
            raise ValueError("--ws-message-size cannot be negative")
        request, key_offset = build_ws_handshake(target, host_header, headers)
        # Text messages must be UTF-8: ASCII is, and costs the server's validator the least.
        ws = {"ws_message": b"x" * ws_message_size, "ws_binary": ws_binary,
              "ws_key_offset": key_offset}
    else:
        request = build_request(method, target, host_header, headers, body, keepalive)
    family, address = _resolve(host, port)
    sources = _parse_sources(source, family)
    threads = min(threads, connections)
    if requests is not None:
        threads = min(threads, requests)
        connections = min(connections, math.ceil(requests / pipeline))
        threads = min(threads, connections)
    packed = socket.inet_pton(family, address)
    packed_sources = [socket.inet_pton(family, s) for s in sources]

    loops: List[BenchLoop] = []
    first = 0
    for i in range(threads):
        n = connections // threads + (1 if i < connections % threads else 0)
        budget = -1 if requests is None else requests // threads + (1 if i < requests % threads else 0)
        loops.append(BenchLoop(
            first_conn=first, connections=n, total_connections=connections, family=family,
            address=packed, port=port, sources=packed_sources, request=request,
            pipeline=pipeline, keepalive=keepalive, rate=rate or 0.0, budget=budget,
            timeout=timeout, connect_timeout=connect_timeout, head=method.upper() == "HEAD",
            local_ports=(*local_ports,) if local_ports else None,
            seed=os.urandom(8), **ws))
        first += n

    tw_before = doctor.time_wait_count()
    t0 = bench_now_ns()
    end = t0 + int(seconds * 1e9) if seconds is not None else 0
    interrupted = _run_loops(loops, t0, end, progress, until)
    finished = max(lp.stats()["finished_ns"] for lp in loops)
    result = _collect(url, loops, t0, finished, tw_before, keepalive, pipeline, rate, threads,
                      connections, sources, interrupted, address)
    if ws:
        _add_ws(result, loops, ws_message_size, ws_binary)
    return result


def _run_loops(loops: List[BenchLoop], t0: int, end: int,
               progress: Optional[Callable[[float, int, int], None]],
               until: Optional[threading.Event] = None) -> bool:
    """Runs each loop on a thread of its own until all have returned; returns True when a
    KeyboardInterrupt (Ctrl-C) stopped them early. Every loop's counters are final then.

    Completion is signalled by an Event per loop, not read from Thread.join: on CPython
    before 3.12 a join() interrupted by Ctrl-C can mark a running thread as finished
    (python/cpython#90882), and the summary would then be read from loops still running."""
    errors: List[BaseException] = []
    done = [threading.Event() for _ in loops]

    def run_loop(loop: BenchLoop, finished: threading.Event) -> None:
        try:
            loop.run(t0, end)
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)
        finally:
            finished.set()

    for i, (lp, ev) in enumerate(zip(loops, done)):
        threading.Thread(target=run_loop, args=(lp, ev), name=f"fastloop-bench-{i}",
                         daemon=True).start()
    interrupted = False
    draining = False
    next_tick = time.monotonic() + 1.0
    while not all(ev.is_set() for ev in done):
        try:
            next(ev for ev in done if not ev.is_set()).wait(0.05)  # short: ^C is served promptly
            if until is not None and not draining and until.is_set():
                draining = True
                for lp in loops:
                    lp.stop(drain=True)
            if progress is not None and time.monotonic() >= next_tick:
                next_tick += 1.0
                counts = [lp.progress() for lp in loops]
                progress((bench_now_ns() - t0) / 1e9, sum(c[0] for c in counts),
                         sum(c[1] for c in counts))
        except KeyboardInterrupt:
            interrupted = True
            for lp in loops:
                lp.stop()  # each loop ends its turn, books what was under way, and returns
    if errors:
        raise errors[0]
    return interrupted


def _add_ws(r: BenchResult, loops: List[BenchLoop], size: int, binary: bool) -> None:
    """The WebSocket figures of a ws:// run (its status table holds the handshakes')."""
    stats = [lp.stats() for lp in loops]
    codes: Dict[str, int] = {}
    for st in stats:
        for code, n in st["ws_close_codes"].items():
            codes[str(code or "other")] = codes.get(str(code or "other"), 0) + n
    lost = sum(st["ws_close_lost"] for st in stats)
    r.mode = f"websocket, {size}-byte {'binary' if binary else 'text'} messages"
    r.ws = {"message_size": size, "binary": binary,
            "upgraded": sum(st["ws_upgraded"] for st in stats),
            "refused": sum(st["ws_refused"] for st in stats),
            "closed_by_server": sum(st["ws_closed"] for st in stats),
            "close_lost": lost, "close_codes": codes}
    if lost:
        r.errors["WSCLOSE"] = lost
        r.errors_by_phase.setdefault("read", {})["WSCLOSE"] = lost


def _errno_name(code: int) -> str:
    """ENAME for an errno counted by the client loops (0: a fault of bench itself)."""
    return _errno.errorcode.get(code, f"E{code}") if code else "INTERNAL"


def _collect(url: str, loops: List[BenchLoop], t0: int, finished: int, tw_before: Optional[int],
             keepalive: bool, pipeline: int, rate: Optional[float], threads: int,
             connections: int, sources: List[str], interrupted: bool, address: str) -> BenchResult:
    total: Dict[str, int] = {}
    status: Dict[int, int] = {}
    phases: Dict[str, Dict[str, int]] = {"connect": {}, "read": {}, "write": {}}
    lat, lat_raw = LatencyHistogram(), LatencyHistogram()
    per_conn_min: Optional[int] = None
    per_conn_max = 0
    for lp in loops:
        st = lp.stats()
        for key, value in st.items():
            if isinstance(value, int) and key not in ("conn_requests_min", "conn_requests_max"):
                total[key] = total.get(key, 0) + value
        if st["closed"]:
            per_conn_min = st["conn_requests_min"] if per_conn_min is None else min(
                per_conn_min, st["conn_requests_min"])
        per_conn_max = max(per_conn_max, st["conn_requests_max"])
        for code, n in st["status"].items():
            status[code] = status.get(code, 0) + n
        for phase in phases:
            for code, n in st[f"errors_{phase}"].items():
                name = _errno_name(code)
                phases[phase][name] = phases[phase].get(name, 0) + n
        lat.merge(lp.latency(True))
        lat_raw.merge(lp.latency(False))
    errors: Dict[str, int] = {}
    for table in phases.values():
        for name, n in table.items():
            errors[name] = errors.get(name, 0) + n
    if total["premature_eof"]:
        errors["EOF"] = total["premature_eof"]
        phases["read"]["EOF"] = total["premature_eof"]
    duration = max(finished - t0, 1) / 1e9
    established = total["established"]
    conns = {
        "attempted": total["attempted"], "established": established,
        "failed": total["connect_failed"], "never_sent": total["never_sent"],
        "closed_by_peer": total["peer_eof"] + total["peer_reset"],
        "closed_by_peer_eof": total["peer_eof"], "closed_by_peer_reset": total["peer_reset"],
        "requests_per_connection": {
            "mean": round(total["requests"] / established, 3) if established else 0.0,
            "min": per_conn_min or 0, "max": per_conn_max},
    }
    rng = doctor.port_range()
    tw_s = doctor.time_wait_seconds()
    nsrc = max(1, len(sources))
    # The same reading as `fastloop doctor`: None where tcp_tw_reuse lifts the limit.
    limit = doctor.time_wait_limit(nsrc, loopback=ipaddress.ip_address(address).is_loopback)
    reuse = doctor.tw_reuse()
    warnings: List[str] = []
    new_per_s = total["attempted"] / duration
    if not keepalive and rng is not None and limit is not None and new_per_s >= 0.8 * limit:
        warnings.append(
            f"{new_per_s:.0f} new connections/s is {'past' if new_per_s > limit else 'near'} "
            f"the ~{limit:.0f}/s that {rng[1] - rng[0] + 1} ports x {nsrc} source address(es) "
            f"sustain while each closed connection holds its port {tw_s} s in TIME_WAIT "
            "(on the side that closes first; bench lets the server close first). Expect "
            "EADDRNOTAVAIL on a client that closes first. Use keep-alive or --source to "
            "spread over more addresses.")
    if errors.get("EADDRNOTAVAIL"):
        warnings.append("ephemeral ports ran out (EADDRNOTAVAIL): see `fastloop doctor`.")
    if errors.get("EMFILE"):
        warnings.append("the process ran out of descriptors (EMFILE): raise `ulimit -n`.")
    mode = "no-keepalive" if not keepalive else (f"pipeline {pipeline}" if pipeline > 1 else "keep-alive")
    return BenchResult(
        url=url, mode=mode, threads=threads, connections_per_run=connections, rate=rate,
        duration_s=duration, requests=total["requests"], failed=total["failed"],
        unfinished=total["unfinished"], sent=total["sent"],
        sent_unanswered=total["sent_unanswered"], not_sent=total["not_sent"],
        bytes_in=total["bytes_in"],
        bytes_out=total["bytes_out"], status=status, latency=lat, latency_uncorrected=lat_raw,
        connections=conns, errors=errors, errors_by_phase={k: v for k, v in phases.items() if v},
        time_wait={"before": tw_before, "after": doctor.time_wait_count()},
        port_range=rng, sources=sources,
        max_new_connections_per_s=round(limit, 1) if limit is not None else None,
        tw_reuse=reuse, warnings=warnings, interrupted=interrupted)


# ---- the command -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the mistake is what the user must see.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return n


def _port_range_arg(text: str) -> Tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port range {text!r}: use LO-HI") from None
    if not 0 < first <= last <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port range {text!r}: 1 <= LO <= HI <= 65535")
    return first, last


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fastloop bench",
        description="HTTP/1.1 and WebSocket load generator that counts connections and "
                    "explains errors. "
                    "Exits 1 when no request succeeded (or, with --fail-on-error, when any "
                    "failed), 2 on bad options. Ctrl-C stops the run and prints its summary.")
    p.add_argument("url", help="http://host[:port][/path][?query], or ws://... for WebSocket "
                               "echo round-trips")
    p.add_argument("-c", "--connections", type=_positive_int, default=10,
                   help="connections kept open at once, across all threads (default 10)")
    p.add_argument("-t", "--threads", type=_positive_int, default=1,
                   help="client threads, each with its own event loop (default 1)")
    p.add_argument("-d", "--duration", type=_duration_arg,
                   help="how long to run: 10s, 500ms, 1m (default 10s unless -n)")
    p.add_argument("-n", "--requests", type=_positive_int,
                   help="stop after this many requests (ws://: round-trips)")
    p.add_argument("-m", "--method", default="GET", help="request method (default GET)")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value', repeatable")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", help="request body (text)")
    body.add_argument("--body-file", help="request body read from this file")
    p.add_argument("--timeout", type=_duration_arg, default=10.0,
                   help="for the responses of each request (or pipelined batch), default 10s")
    p.add_argument("--connect-timeout", type=_duration_arg, default=3.0,
                   help="for each TCP connect, default 3s")
    p.add_argument("--no-keepalive", action="store_true",
                   help="a new TCP connection per request (Connection: close)")
    p.add_argument("--pipeline", type=_positive_int, default=1, metavar="N",
                   help="send N requests back to back per connection")
    p.add_argument("-R", "--rate", type=float,
                   help="requests/s across all connections; latency counts from each "
                        "request's due time (coordinated omission corrected)")
    p.add_argument("--source", help="source addresses: a CIDR (127.0.0.0/24) or a comma list")
    p.add_argument("--local-ports", metavar="LO-HI", type=_port_range_arg,
                   help="restrict each socket's ephemeral ports (Linux >= 6.3)")
    p.add_argument("--ws-message-size", type=int, default=64, metavar="BYTES",
                   help="ws:// only: the size of each message (default 64)")
    p.add_argument("--ws-binary", action="store_true",
                   help="ws:// only: send binary messages (default text)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--fail-on-error", action="store_true",
                   help="exit 1 when any request failed or any error was counted")
    return p


def _sigterm_interrupts() -> None:
    """SIGTERM (`timeout`, a supervisor) stops the run like Ctrl-C: the summary still prints."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def exit_status(result: BenchResult, fail_on_error: bool) -> int:
    """1 when no request succeeded (as wrk), or with fail_on_error when anything failed."""
    if result.requests == 0:
        return 1
    return 1 if fail_on_error and (result.failed or result.errors) else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    body = args.body.encode() if args.body is not None else None
    if args.body_file:
        try:
            with open(args.body_file, "rb") as f:
                body = f.read()
        except OSError as exc:
            print(f"fastloop bench: --body-file: {exc}", file=sys.stderr)
            return 2
    tty = sys.stdout.isatty() and not args.json

    def show(elapsed: float, done: int, failed: int) -> None:
        sys.stdout.write(f"\r  {elapsed:6.1f}s  {done} requests  {done / max(elapsed, 1e-9):.0f}/s"
                         f"  {failed} failed   ")
        sys.stdout.flush()

    _sigterm_interrupts()
    try:
        result = run(args.url, connections=args.connections, threads=args.threads,
                     duration=args.duration, requests=args.requests, method=args.method,
                     headers=args.header, body=body, timeout=args.timeout,
                     connect_timeout=args.connect_timeout, keepalive=not args.no_keepalive,
                     pipeline=args.pipeline, rate=args.rate, source=args.source,
                     local_ports=args.local_ports, ws_message_size=args.ws_message_size,
                     ws_binary=args.ws_binary, progress=show if tty else None)
    except (ValueError, OSError) as exc:
        print(f"fastloop bench: {exc}", file=sys.stderr)
        return 2
    if tty:
        sys.stdout.write("\r" + " " * 70 + "\r")
    print(json.dumps(result.to_dict()) if args.json else format_report(result))
    return exit_status(result, args.fail_on_error)


if __name__ == "__main__":
    sys.exit(main())
