"""Access-log lines: gunicorn's --access-logformat atoms, or one JSON object per request.

A format is Python %-formatting over named atoms, as in gunicorn:

    h remote address ("-" over a Unix socket)  l "-"  u user (HTTP Basic) or "-"
    t time, [01/Dec/2026:12:28:06 +0000]       r request line  m method  U path  q query
    H protocol  s status  B body bytes  b body bytes, "-" for none  f referer  a user agent
    D duration in microseconds  L duration in decimal seconds  p "<pid>"
    {name}i the request header "name" ("-" when absent)

Every line has one timestamp, the time the answer was complete, given by the caller. An
unknown atom is refused when the format is checked (gunicorn prints "-" for it silently: a
typo would go unnoticed until someone reads the logs).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import time
from typing import Any, Dict

__all__ = ["DEFAULT_FORMAT", "check_format", "format_line", "json_line", "Entry"]

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

_ATOMS = frozenset("hlutrmUqHsBbfaDLp")


class Entry:
    """What a line is made of: the request, its status, the body bytes handed to the
    connection, the duration in seconds and the wall-clock time of completion."""

    __slots__ = ("request", "status", "sent", "duration", "when")

    def __init__(self, request: Any, status: int, sent: int, duration: float,
                 when: float) -> None:
        self.request = request
        self.status = status
        self.sent = sent
        self.duration = duration
        self.when = when


class _Atoms(dict):
    """The fixed atoms, computed up front (they are cheap); header atoms on demand."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(fields(entry))
        self.request = entry.request

    def __missing__(self, key: str) -> str:
        if len(key) > 3 and key[0] == "{" and key.endswith("}i"):
            return self.request.header(key[1:-2], "-")
        raise KeyError(key)


def fields(entry: Entry) -> Dict[str, Any]:
    """The fixed atoms of entry, by their one-letter names."""
    request = entry.request
    client = request.client
    target = request.path + ("?" + request.query if request.query else "")
    method = request.method
    return {
        "h": client[0] if isinstance(client, tuple) else "-",
        "l": "-",
        "u": _user(request.header("authorization", "")),
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(entry.when)),
        "r": f"{method} {target} {request.version}",
        "m": method,
        "U": request.path,
        "q": request.query,
        "H": request.version,
        "s": entry.status,
        "B": entry.sent,
        "b": entry.sent if entry.sent else "-",
        "f": request.header("referer", "-"),
        "a": request.header("user-agent", "-"),
        "D": int(entry.duration * 1e6),
        "L": f"{entry.duration:.6f}",
        "p": f"<{os.getpid()}>",
    }


def _user(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "-"
    return user.partition(":")[0] or "-"


def format_line(fmt: str, entry: Entry) -> str:
    return fmt % _Atoms(entry)


def json_line(entry: Entry) -> str:
    """One JSON object: the same fields as the atoms, named, numbers as numbers."""
    f = fields(entry)
    return json.dumps({
        "remote_addr": f["h"], "user": None if f["u"] == "-" else f["u"],
        "time": datetime.datetime.fromtimestamp(entry.when).astimezone().isoformat(
            timespec="microseconds"),
        "request": f["r"], "method": f["m"], "path": f["U"], "query": f["q"],
        "protocol": f["H"], "status": entry.status, "bytes": entry.sent,
        "referer": None if f["f"] == "-" else f["f"],
        "user_agent": None if f["a"] == "-" else f["a"],
        "duration_us": f["D"], "duration_s": round(entry.duration, 6), "pid": os.getpid(),
    }, ensure_ascii=False)


class _Probe(dict):
    def __missing__(self, key: str) -> str:
        if key in _ATOMS or (len(key) > 3 and key[0] == "{" and key.endswith("}i")):
            return "-"
        raise ValueError(f"unknown access log atom %({key})s")


def check_format(fmt: str) -> None:
    """Raises ValueError when fmt is not a format of known atoms."""
    if not isinstance(fmt, str):
        raise ValueError(f"access_log_format must be text, not {fmt!r}")
    try:
        fmt % _Probe()
    except ValueError as exc:
        raise ValueError(f"access_log_format {fmt!r}: {exc}") from None
    except TypeError as exc:  # "%s" without a name, "%(h)d" on text, ...
        raise ValueError(f"access_log_format {fmt!r}: {exc}") from None
