"""What a `fastloop bench` run measured (BenchResult) and the report it prints.

fastloop/bench.py runs the client loops and fills a BenchResult; this module only holds and
formats it: the text report (wrk's layout plus the request, connection, error and port
sections) and the --json object (BenchResult.to_dict()).
"""

from __future__ import annotations

import dataclasses
import errno as _errno
import os
from typing import Any, Dict, List, Optional, Tuple

from . import doctor
from ._bench import LatencyHistogram

__all__ = ["BenchResult", "ERROR_CAUSES", "PERCENTILES", "format_report"]

# errno name -> the one-line cause printed beside it. "EOF" is ours: the server closed the
# connection before the response was complete.
ERROR_CAUSES = {
    "EADDRNOTAVAIL": "no free local port for this source address: ephemeral ports exhausted "
                     "(TIME_WAIT or too many connections); use keep-alive or --source",
    "EADDRINUSE": "the source address/port is taken (bind before connect)",
    "ECONNREFUSED": "nothing listens there, or the server's listen backlog is full",
    "ECONNRESET": "the server reset the connection (crashed, overloaded, or closed with unread data)",
    "EPIPE": "wrote to a connection the server had already closed",
    "ETIMEDOUT": "no answer within --timeout (or --connect-timeout while connecting)",
    "EMFILE": "this process is out of descriptors: raise `ulimit -n` (see fastloop doctor)",
    "ENFILE": "the system is out of descriptors: raise fs.file-max",
    "ENOBUFS": "the kernel is out of socket buffer memory",
    "ENOMEM": "out of memory",
    "EHOSTUNREACH": "no route to the host",
    "ENETUNREACH": "no route to the network",
    "EPROTO": "the response is not valid HTTP/1.x (or its head exceeds 1 MiB); ws://: the "
              "upgrade was refused or its Sec-WebSocket-Accept is wrong, or a frame broke RFC 6455",
    "ENOPROTOOPT": "this OS does not support the socket option (--local-ports needs Linux >= 6.3)",
    "EINVAL": "invalid argument (a source address of the wrong family?)",
    "EOF": "the server closed the connection before the response was complete",
    "WSCLOSE": "the server closed the WebSocket (close frame) before echoing the message",
}


PERCENTILES = (("p50", 50.0), ("p75", 75.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9),
               ("p9999", 99.99))


@dataclasses.dataclass
class BenchResult:
    """Everything a run measured. to_dict() is the --json object."""

    url: str
    mode: str                       # "keep-alive", "no-keepalive" or "pipeline N"
    threads: int
    connections_per_run: int
    rate: Optional[float]           # requests/s asked for (-R), None for a closed loop
    duration_s: float
    # Every request started ends in exactly one of requests, sent_unanswered or not_sent, so
    # sent == requests + sent_unanswered; each unanswered one is also failed or unfinished.
    requests: int                   # complete responses
    failed: int                     # requests that got no complete response, lost to an error
    unfinished: int                 # under way when the run ended (not failures)
    sent: int                       # requests written whole
    sent_unanswered: int            # written whole, no complete response
    not_sent: int                   # never written whole (connect failed, run ended first, ...)
    bytes_in: int
    bytes_out: int
    status: Dict[int, int]
    latency: LatencyHistogram       # from the intended start (coordinated omission corrected)
    latency_uncorrected: LatencyHistogram
    connections: Dict[str, Any]     # attempted, established, failed, closed_by_peer, ...
    errors: Dict[str, int]          # errno name -> count (all phases)
    errors_by_phase: Dict[str, Dict[str, int]]
    time_wait: Dict[str, Optional[int]]
    port_range: Optional[Tuple[int, int]]
    sources: List[str]
    max_new_connections_per_s: Optional[float]
    tw_reuse: Optional[int]
    warnings: List[str]
    interrupted: bool = False
    # ws:// runs: message_size, binary, upgraded, refused, closed_by_server, close_lost (closes
    # that cut a message off), close_codes {code: count}. "requests" are then round-trips.
    ws: Optional[Dict[str, Any]] = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_in / self.duration_s if self.duration_s > 0 else 0.0

    @staticmethod
    def _percentiles_us(h: LatencyHistogram) -> Dict[str, float]:
        out = {name: h.percentile(p) / 1000.0 for name, p in PERCENTILES}
        out.update(max=h.max / 1000.0, min=h.min / 1000.0, mean=round(h.mean / 1000.0, 3),
                   count=h.count)
        return out

    def latency_us(self, corrected: bool = True) -> Dict[str, float]:
        return self._percentiles_us(self.latency if corrected else self.latency_uncorrected)

    def to_dict(self) -> dict:
        return {
            "url": self.url, "mode": self.mode, "threads": self.threads,
            "connections_per_run": self.connections_per_run, "rate": self.rate,
            "requests": self.requests, "failed": self.failed, "unfinished": self.unfinished,
            "sent": self.sent, "sent_unanswered": self.sent_unanswered, "not_sent": self.not_sent,
            "duration_s": round(self.duration_s, 6),
            "rps": round(self.rps, 3), "bytes": self.bytes_in, "bytes_out": self.bytes_out,
            "bytes_per_s": round(self.bytes_per_s, 3),
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "latency_us": self.latency_us(True),
            "latency_uncorrected_us": self.latency_us(False),
            "connections": self.connections,
            "errors": self.errors, "errors_by_phase": self.errors_by_phase,
            "time_wait": self.time_wait,
            "port_range": ({"low": self.port_range[0], "high": self.port_range[1]}
                           if self.port_range else None),
            "sources": self.sources,
            "max_new_connections_per_s": self.max_new_connections_per_s,
            "tcp_tw_reuse": self.tw_reuse,
            "warnings": self.warnings, "interrupted": self.interrupted, "ws": self.ws,
        }


def _fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f}s"
    if us >= 1e3:
        return f"{us / 1e3:.2f}ms"
    return f"{us:.0f}us"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n:.0f}B"
        n /= 1024
    return f"{n:.1f}GiB"


def format_report(r: BenchResult) -> str:
    """The human report: wrk's layout, plus the connection, error and port sections."""
    out = [f"{r.duration_s:.2f}s test @ {r.url}",
           f"  {r.threads} thread(s), {r.connections_per_run} connection(s), {r.mode}"
           + (f", rate {r.rate:g} req/s" if r.rate else "")
           + (" (interrupted)" if r.interrupted else "")]
    lat = r.latency_us(True)
    names = ["p50", "p75", "p90", "p99", "p999", "p9999", "max"]
    labels = ["50%", "75%", "90%", "99%", "99.9%", "99.99%", "max"]
    out.append("  Latency    " + "  ".join(f"{lab:>8}" for lab in labels) + f"  {'mean':>8}")
    rows = [("corrected" if r.rate else "", lat)]
    if r.rate:
        rows.append(("uncorrected", r.latency_us(False)))
    for label, row in rows:
        out.append(f"  {label:11}" + "  ".join(f"{_fmt_us(row[n]):>8}" for n in names)
                   + f"  {_fmt_us(row['mean']):>8}")
    what = "round-trips" if r.ws else "requests"
    out.append(f"  {r.requests} {what} in {r.duration_s:.2f}s, {_fmt_bytes(r.bytes_in)} read"
               + (f"; {r.failed} failed" if r.failed else "")
               + (f"; {r.unfinished} under way at the end" if r.unfinished else ""))
    out.append(f"  sent {r.sent} = answered {r.requests} + unanswered {r.sent_unanswered}"
               + (f"; {r.not_sent} never sent" if r.not_sent else ""))
    out.append(f"{'Round-trips' if r.ws else 'Requests'}/sec: {r.rps:12.2f}")
    out.append(f"Transfer/sec: {_fmt_bytes(r.bytes_per_s):>12}")
    out.append(("Handshakes:   " if r.ws else "Status:       ")
               + (", ".join(f"{k}: {v}" for k, v in sorted(r.status.items())) or "none"))
    if r.ws:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.ws["close_codes"].items()))
        out.append(f"WebSocket:    upgraded {r.ws['upgraded']}, refused {r.ws['refused']}; closed "
                   f"by the server {r.ws['closed_by_server']}" + (f" (codes {codes})" if codes else "")
                   + (f", {r.ws['close_lost']} with a message unanswered" if r.ws["close_lost"] else ""))
    c = r.connections
    per = c["requests_per_connection"]
    out.append(f"Connections:  attempted {c['attempted']}, established {c['established']}, "
               f"failed {c['failed']}"
               + (f"; {c['never_sent']} closed before sending a request" if c["never_sent"] else ""))
    out.append(f"              closed by server {c['closed_by_peer']} (EOF "
               f"{c['closed_by_peer_eof']}, reset {c['closed_by_peer_reset']}); {what} per "
               f"connection mean {per['mean']:g}, min {per['min']}, max {per['max']}")
    if r.errors:
        out.append("Errors:")
        for name, n in sorted(r.errors.items(), key=lambda kv: -kv[1]):
            phase = [p for p, t in r.errors_by_phase.items() if name in t]
            cause = ERROR_CAUSES.get(name) or (
                os.strerror(getattr(_errno, name)) if hasattr(_errno, name) else "")
            out.append(f"  {name:14} {n:>8}  ({'/'.join(phase)}) {cause}")
    else:
        out.append("Errors:       none")
    tw = r.time_wait
    out.append(f"TIME_WAIT:    before {tw['before']}, after {tw['after']} (sockets on this host)")
    if r.port_range:
        lo, hi = r.port_range
        srcs = f" x {len(r.sources)} source addresses" if r.sources else ""
        limit = (f"at most ~{r.max_new_connections_per_s:g} new connections/s while TIME_WAIT "
                 f"holds ports {doctor.time_wait_seconds()} s"
                 if r.max_new_connections_per_s is not None else "the TIME_WAIT limit is lifted")
        out.append(f"Local ports:  {lo}-{hi} ({hi - lo + 1}){srcs}: {limit}"
                   + (f" (tcp_tw_reuse={r.tw_reuse})" if r.tw_reuse is not None else ""))
    for w in r.warnings:
        out.append(f"WARNING: {w}")
    return "\n".join(out)
