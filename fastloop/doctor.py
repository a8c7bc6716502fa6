"""`fastloop doctor`: what limits a load test on this machine, and what to do about each limit.

Reads only (no root needed): /proc on Linux, `sysctl -n` on macOS and the BSDs. The readers
here are also what `fastloop bench` uses to report TIME_WAIT and the port range, so each fact
is read in one place.

    fastloop doctor           a table: setting, value, verdict, the command that changes it
    fastloop doctor --json    the same as one JSON object
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import socket
import subprocess
import sys
from typing import List, Optional, Tuple

__all__ = [
    "Check",
    "checks",
    "loopback_sources",
    "main",
    "port_range",
    "time_wait_count",
    "time_wait_limit",
    "time_wait_seconds",
    "tw_reuse",
]

LINUX = sys.platform.startswith("linux")
TCP_TIME_WAIT = "06"  # the st column of /proc/net/tcp (include/net/tcp_states.h)


def _read_proc(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _sysctl(name: str) -> Optional[str]:
    """`sysctl -n name` (macOS, BSD), or None where it does not exist."""
    try:
        res = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def port_range() -> Optional[Tuple[int, int]]:
    """The ephemeral (local) port range connect() picks from, inclusive, or None if unknown."""
    if LINUX:
        text = _read_proc("/proc/sys/net/ipv4/ip_local_port_range")
        if text:
            lo, hi = text.split()
            return int(lo), int(hi)
        return None
    first, last = _int(_sysctl("net.inet.ip.portrange.first")), _int(_sysctl("net.inet.ip.portrange.last"))
    return (first, last) if first is not None and last is not None else None


def time_wait_seconds() -> int:
    """How long a socket stays in TIME_WAIT: fixed at 60 s on Linux (TCP_TIMEWAIT_LEN, not
    tunable; tcp_fin_timeout is FIN_WAIT_2's), 2 * MSL elsewhere (macOS: 2 * 15 s)."""
    if LINUX:
        return 60
    msl_ms = _int(_sysctl("net.inet.tcp.msl"))
    return 2 * msl_ms // 1000 if msl_ms else 30


def time_wait_count(port: Optional[int] = None) -> Optional[int]:
    """Sockets in TIME_WAIT on this host (IPv4 and IPv6); with port, only those whose local or
    remote port is that port. None where it cannot be read (Linux reads /proc/net/tcp{,6};
    elsewhere `netstat -an`, without the port filter)."""
    if not LINUX:
        try:
            out = subprocess.run(["netstat", "-an", "-p", "tcp"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        return sum(1 for line in out.splitlines() if "TIME_WAIT" in line)
    total = 0
    found = False
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f, None)  # the header line
                found = True
                for line in f:
                    fields = line.split()
                    if len(fields) < 4 or fields[3] != TCP_TIME_WAIT:
                        continue
                    if port is not None:
                        local = int(fields[1].rsplit(":", 1)[1], 16)
                        remote = int(fields[2].rsplit(":", 1)[1], 16)
                        if port not in (local, remote):
                            continue
                    total += 1
        except OSError:
            continue
    return total if found else None


def tw_reuse() -> Optional[int]:
    """net.ipv4.tcp_tw_reuse (Linux): 0 off, 1 on, 2 loopback only (the default since 4.19)."""
    return _int(_read_proc("/proc/sys/net/ipv4/tcp_tw_reuse")) if LINUX else None


def time_wait_limit(sources: int = 1, loopback: bool = True) -> Optional[float]:
    """The new connections per second that `sources` source addresses can open to one server
    address:port when the client closes first: each closed connection then holds its local
    port in TIME_WAIT for time_wait_seconds(), so the port range lasts ports x sources / that.
    None when the limit does not apply, because tcp_tw_reuse lets connect() reuse a port in
    TIME_WAIT (1: toward any address; 2: toward loopback, the default since Linux 4.19), or
    when the port range is unknown. `fastloop bench` and the checks below both ask this."""
    rng = port_range()
    reuse = tw_reuse()
    if rng is None or reuse == 1 or (reuse == 2 and loopback):
        return None
    return (rng[1] - rng[0] + 1) * max(1, sources) / time_wait_seconds()


def loopback_sources(probe: int = 4) -> List[str]:
    """Loopback addresses a client can bind as its source: on Linux all of 127.0.0.0/8 routes
    to lo, elsewhere only the addresses configured on lo0. Probes 127.0.0.1 .. 127.0.0.probe
    and ::1 by binding (port 0, nothing is sent)."""
    usable = []
    candidates = [f"127.0.0.{i}" for i in range(1, probe + 1)] + ["::1"]
    for addr in candidates:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr, 0))
            usable.append(addr)
        except OSError:
            pass
    return usable


@dataclasses.dataclass
class Check:
    name: str
    value: str
    verdict: str            # "ok", "warn" or "info"
    why: str                # what the value means for a load test
    fix: str = ""           # the command that changes it ("" when nothing to do)


def _nofile_fix(soft: int, hard: int) -> str:
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 1048576)
        return f"ulimit -n {target}  (in the shell that starts the test)"
    return ("the hard limit is reached: raise nofile in /etc/security/limits.conf (or LimitNOFILE= "
            "for a systemd unit), log in again, then ulimit -n 65536")


def _verdict(ok: bool) -> str:
    return "ok" if ok else "warn"


def checks() -> List[Check]:
    """Every check this platform supports, in the order a load test meets the limits."""
    out: List[Check] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    out.append(Check(
        "ulimit -n (open files)", f"{soft} (hard {hard_text})", _verdict(soft >= 65536),
        f"each connection is a descriptor: at most ~{soft} connections per process "
        "(client and server count separately); beyond it accept/socket fail with EMFILE",
        "" if soft >= 65536 else _nofile_fix(soft, hard)))

    if LINUX:
        somax = _int(_read_proc("/proc/sys/net/core/somaxconn"))
        if somax is not None:
            out.append(Check(
                "net.core.somaxconn", str(somax), _verdict(somax >= 4096),
                "caps every listen() backlog: a burst of connects beyond it is dropped or "
                "refused (ECONNREFUSED / SYN retries of 1 s)",
                "" if somax >= 4096 else "sudo sysctl -w net.core.somaxconn=65535"))
        syn = _int(_read_proc("/proc/sys/net/ipv4/tcp_max_syn_backlog"))
        if syn is not None:
            out.append(Check(
                "net.ipv4.tcp_max_syn_backlog", str(syn), _verdict(syn >= 4096),
                "half-open connections queued per listener before SYN cookies or drops",
                "" if syn >= 4096 else "sudo sysctl -w net.ipv4.tcp_max_syn_backlog=65535"))
    else:
        somax = _int(_sysctl("kern.ipc.somaxconn"))
        if somax is not None:
            out.append(Check(
                "kern.ipc.somaxconn", str(somax), _verdict(somax >= 4096),
                "caps every listen() backlog: connects beyond it are refused",
                "" if somax >= 4096 else "sudo sysctl -w kern.ipc.somaxconn=65535"))

    rng = port_range()
    tw_s = time_wait_seconds()
    if rng:
        size = rng[1] - rng[0] + 1
        limit = time_wait_limit(loopback=True)
        if limit is None:
            sustain = ("on loopback tcp_tw_reuse lets it reuse those ports, so that limit does "
                       "not apply there")
        else:
            sustain = (f"a client that closes first sustains at most ~{limit:.0f} new "
                       "connections/s (then connect fails with EADDRNOTAVAIL)")
        out.append(Check(
            "ephemeral port range", f"{rng[0]}-{rng[1]} ({size} ports)", _verdict(size >= 28000),
            f"one source address reaches one server address:port through at most {size} "
            f"connections at once; the side that closes first keeps each port in TIME_WAIT "
            f"for {tw_s} s: {sustain}. Use keep-alive, several "
            "source addresses (fastloop bench --source 127.0.0.0/24) or a wider range",
            "" if size >= 28000 else (
                "sudo sysctl -w net.ipv4.ip_local_port_range='1024 65535'" if LINUX else
                "sudo sysctl -w net.inet.ip.portrange.first=16384")))

    if LINUX:
        reuse = tw_reuse()
        if reuse is not None:
            meaning = {0: "off", 1: "on for all outgoing connections", 2: "on for loopback only"}
            out.append(Check(
                "net.ipv4.tcp_tw_reuse", f"{reuse} ({meaning.get(reuse, '?')})",
                "ok" if reuse else "warn",
                "lets connect() reuse a port whose old connection is in TIME_WAIT (needs TCP "
                "timestamps, on by default): " + {
                    0: "off, so the TIME_WAIT limit above applies to every destination",
                    1: "the TIME_WAIT limit above is lifted toward every destination",
                    2: "the TIME_WAIT limit above is lifted toward loopback only"}.get(reuse, "?"),
                "" if reuse else "sudo sysctl -w net.ipv4.tcp_tw_reuse=2"))
        fin = _int(_read_proc("/proc/sys/net/ipv4/tcp_fin_timeout"))
        if fin is not None:
            out.append(Check(
                "net.ipv4.tcp_fin_timeout", f"{fin} s", "info",
                "how long an orphaned socket waits in FIN_WAIT_2; it does NOT shorten TIME_WAIT "
                "(fixed 60 s on Linux), a common misreading", ""))
    else:
        msl = _int(_sysctl("net.inet.tcp.msl"))
        if msl is not None:
            out.append(Check(
                "net.inet.tcp.msl", f"{msl} ms", "info",
                f"TIME_WAIT lasts 2 x MSL = {2 * msl // 1000} s",
                "" if msl <= 15000 else "sudo sysctl -w net.inet.tcp.msl=15000"))

    tw = time_wait_count()
    if tw is not None:
        limit = rng[1] - rng[0] + 1 if rng else None
        busy = limit is not None and tw > limit // 2
        out.append(Check(
            "TIME_WAIT sockets now", str(tw), _verdict(not busy),
            "connections closed in the last ~%d s; they hold their port until they expire" % tw_s,
            "" if not busy else f"wait {tw_s} s before the next run, or use keep-alive"))

    sources = loopback_sources()
    extra_v4 = [a for a in sources if a.startswith("127.") and a != "127.0.0.1"]
    if LINUX:
        why = ("all of 127.0.0.0/8 routes to lo: bench --source 127.0.0.0/24 multiplies the "
               "port space by up to 254" if extra_v4 else "only 127.0.0.1 could be bound")
        fix = ""
    else:
        why = ("extra loopback aliases are configured" if extra_v4 else
               "only 127.0.0.1 is on lo0: add aliases to use --source")
        fix = "" if extra_v4 else "sudo ifconfig lo0 alias 127.0.0.2 up  (and .3, .4, ...)"
    out.append(Check("loopback source addresses", ", ".join(sources) or "none",
                     "ok" if extra_v4 else "info", why, fix))

    if LINUX:
        ct_max = _int(_read_proc("/proc/sys/net/netfilter/nf_conntrack_max"))
        ct_now = _int(_read_proc("/proc/sys/net/netfilter/nf_conntrack_count"))
        if ct_max is not None:
            out.append(Check(
                "net.netfilter.nf_conntrack_max", f"{ct_max} (in use {ct_now})",
                _verdict(ct_max >= 262144),
                "connection tracking is on: when its table is full new connections are "
                "dropped silently (dmesg: 'nf_conntrack: table full')",
                "" if ct_max >= 262144 else "sudo sysctl -w net.netfilter.nf_conntrack_max=1048576"))
    return out


def format_checks(items: List[Check]) -> str:
    lines = ["fastloop doctor: what limits a load test on this machine", ""]
    width = max(len(c.name) for c in items)
    for c in items:
        lines.append(f"  [{c.verdict:4}] {c.name:{width}}  {c.value}")
        lines.append(f"         {'':{width}}  {c.why}")
        if c.fix:
            lines.append(f"         {'':{width}}  fix: {c.fix}")
    warns = sum(1 for c in items if c.verdict == "warn")
    lines += ["", f"{warns} warning(s)." if warns else "Nothing here should limit a load test."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastloop doctor",
        description="Print what limits a load test on this machine and what to do about each "
                    "limit. Reads only; needs no root.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    items = checks()
    if args.json:
        print(json.dumps({"platform": sys.platform,
                          "checks": [dataclasses.asdict(c) for c in items]}))
    else:
        print(format_checks(items))
    return 0


if __name__ == "__main__":
    sys.exit(main())
