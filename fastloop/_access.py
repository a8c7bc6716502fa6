"""The access log: one line per request on the "fastloop.access" logger, at INFO.

    127.0.0.1 - - [29/Nov/2026:12:28:06 +0000] "GET /users/7?x=1 HTTP/1.1" 200 13 "-" "curl/8.5.0"

The line's layout is gunicorn's --access-logformat (fastloop/_accessformat.py: the atoms and
the default above), or one JSON object per line.

AccessLog is an observer of fastloop._observe.ObservedApp, which reports each answer a
Python handler gives with its true status, body bytes and duration; the line is written at
completion, with one timestamp. With the log on, static routes are answered by their Python
twin (App.static registers both), so they are logged too: logging needs the GIL per request
anyway. Requests the core itself rejects (400, 408, 413, 414, 431, 501, 505) never reach a
handler; the core reports each after its loop turn (AccessLog.rejected), with the client and
the request line as far as it was read, so they are logged too: no header was parsed for
them (%(a)s, %(f)s, %({name}i)s are "-"), the bytes are the body bytes of the error answer,
the duration 0.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ._accessformat import DEFAULT_FORMAT, Entry, check_format, format_line, json_line
from ._observe import ObservedApp
from .app import App

__all__ = ["AccessLog", "AccessLogApp", "access_log", "access_log_on"]

access_log = logging.getLogger("fastloop.access")


def access_log_on() -> bool:
    return access_log.isEnabledFor(logging.INFO)


class AccessLog:
    """The observer that writes an answer's line, formatted by fmt (gunicorn atoms) or, with
    as_json, as one JSON object."""

    def __init__(self, fmt: str = DEFAULT_FORMAT, as_json: bool = False) -> None:
        check_format(fmt)
        self.fmt = fmt
        self.as_json = as_json

    def __call__(self, request: Any, status: int, sent: int, seconds: float) -> None:
        if not access_log_on():
            return
        entry = Entry(request, status, sent, seconds, time.time())
        access_log.info("%s", json_line(entry) if self.as_json else format_line(self.fmt, entry))

    def rejected(self, status: int, client: Any, line: str, sent: int) -> None:
        """A request the core answered with status itself (fastloop._observe)."""
        self(_Rejected(client, line), status, sent, 0.0)


class _Rejected:
    """What a log line needs of a request the core rejected: its client and request line."""

    def __init__(self, client: Any, line: str) -> None:
        # Escaped: the line is whatever the client sent, control characters included.
        line = "".join(ch if " " <= ch < "\x7f" else f"\\x{ord(ch):02x}" for ch in line)
        parts = line.split(" ", 2)
        self.client = client
        self.method = parts[0] or "-"
        target = parts[1] if len(parts) > 1 else "-"
        self.path, _, self.query = target.partition("?")
        self.version = parts[2] if len(parts) > 2 else "-"

    def header(self, name: str, default: Any = None) -> Any:
        return default


class AccessLogApp(ObservedApp):
    """app, with every request written to the "fastloop.access" logger at INFO (static
    routes, 404s and 405s included)."""

    def __init__(self, app: App, fmt: str = DEFAULT_FORMAT, as_json: bool = False) -> None:
        self.log = AccessLog(fmt, as_json)
        super().__init__(app, [self.log], take_statics=True, active=access_log_on)
        self.fmt = fmt
        self.as_json = as_json
