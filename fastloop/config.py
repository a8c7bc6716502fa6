"""fastloop.Config: every serving setting, its default, its FASTLOOP_* variable and its help.

One table drives everything: `fastloop serve` builds its flags from it (--name-with-dashes),
fastloop.run() takes the same names as keywords, and each setting's default can be set in the
environment as FASTLOOP_<NAME> (FASTLOOP_PORT=9000, FASTLOOP_ACCESS_LOG=1). Precedence, highest
first: a flag or keyword, the environment, the default below. An old spelling (RENAMED:
handler_threads, now threads) is still taken at each level for one release, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional

from ._accessformat import DEFAULT_FORMAT, check_format
from ._core import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADERS
from .proxy import TrustedPeers, check_root_path

__all__ = ["Config", "ENV_PREFIX", "LOG_LEVELS", "INTERFACES", "REPEATABLE", "RENAMED",
           "rename_deprecated"]

log = logging.getLogger("fastloop")

ENV_PREFIX = "FASTLOOP_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
INTERFACES = ("auto", "fastloop", "wsgi", "asgi")
LIFESPAN_MODES = ("auto", "on", "off")
LOOPS = ("auto", "asyncio", "uvloop")
WS_MODES = ("auto", "none")
# The parser keeps header positions in a fixed array (core/http.pxd FL_MAX_HEADERS).
MAX_REQUEST_FIELDS = MAX_HEADERS  # the core's cap
# Settings a flag may repeat: their values are kept comma-separated (FASTLOOP_RELOAD_DIR=a,b).
REPEATABLE = ("reload_dir", "reload_include", "reload_exclude")
# Old spellings still taken for one release (flag, FASTLOOP_* variable, keyword), each with a
# warning: the old name -> the setting it now is. (`threads` itself changed meaning, from event
# loops to handler threads, as gunicorn's gthread --threads; loops are runtime_threads.)
RENAMED = {"handler_threads": "threads"}
# The most a request line or header line may be set to (core/http.pxd FL_MAX_HEAD_BYTES), and
# the most a body may (http.pyx MAX_BODY_BYTES, 1 TiB): lengths from the wire are compared with
# these, so they stay far from any overflow.
MAX_REQUEST_LINE = MAX_HEAD_BYTES
MAX_REQUEST_BODY = MAX_BODY_BYTES
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _setting(default: Any, help: str, metavar: Optional[str] = None, short: Optional[str] = None,
             choices: Optional[tuple] = None) -> Any:
    return dataclasses.field(default=default, metadata={
        "help": help, "metavar": metavar, "short": short, "choices": choices})


@dataclasses.dataclass
class Config:
    """Serving settings. Build it with Config.from_env(**overrides) to honour FASTLOOP_*
    variables; Config(...) alone takes the built-in defaults. validate() checks every value."""

    # ---- where to listen
    host: str = _setting("127.0.0.1", "address to bind; 0.0.0.0 or :: for every interface",
                         "ADDR")
    port: int = _setting(8000, "TCP port; 0 picks a free one", "PORT")
    uds: Optional[str] = _setting(None, "bind a Unix socket at this path instead of TCP", "PATH")
    fd: Optional[int] = _setting(None, "serve an already listening socket inherited as this "
                                 "descriptor (systemd, a supervisor) instead of binding", "FD")
    uds_perms: str = _setting("666", "mode of the --uds socket file, in octal (666: a proxy "
                              "running as another user can connect)", "MODE")
    reuse_port: bool = _setting(False, "join other servers already listening on --port with "
                                "SO_REUSEPORT and share its connections (off: a busy port is "
                                "refused)")
    backlog: int = _setting(2048, "queue of connections not accepted yet (capped by the kernel's "
                            "somaxconn)", "N")
    # ---- processes and threads
    workers: int = _setting(1, "worker processes, pre-forked and supervised; more than 1 lets "
                            "Python handlers use several cores", "N", short="-w")
    threads: int = _setting(4, "Python threads per worker process that run the application's "
                            "handlers (fastloop routes, WSGI) beside the event loops, as "
                            "gunicorn's gthread --threads (was --handler-threads)", "N")
    runtime_threads: int = _setting(1, "event-loop threads per worker process: they do the "
                                    "network I/O and never run application code", "N")
    dispatch: Optional[str] = _setting(None, "how connections reach event loops: reuseport (the "
                                       "kernel spreads them; Linux default) or acceptor (one "
                                       "thread hands them out)", choices=("reuseport", "acceptor"))
    preload: bool = _setting(False, "import the application once, before forking the "
                             "workers (off: each worker imports it after the fork, so SIGHUP "
                             "deploys new code)")
    timeout_worker: Optional[float] = _setting(None, "kill and replace a worker process that "
                                               "shows no sign of life for this long", "SECONDS")
    # ---- timeouts, in seconds
    timeout_keep_alive: float = _setting(DEFAULT_TIMEOUTS["idle"], "close a keep-alive "
                                         "connection idle this long", "SECONDS")
    timeout_request_header: float = _setting(DEFAULT_TIMEOUTS["header"], "a request head must "
                                             "arrive within this, else 408 (slowloris)", "SECONDS")
    timeout_graceful_shutdown: float = _setting(30.0, "on SIGTERM/SIGINT/SIGHUP, time given to "
                                                "requests in flight before connections are "
                                                "closed", "SECONDS")
    # ---- limits
    limit_concurrency: Optional[int] = _setting(None, "open connections per worker process "
                                                "beyond which new ones get 503 and are closed",
                                                "N")
    limit_request_line: int = _setting(DEFAULT_LIMITS["request_line"], "longest request line, "
                                       f"in bytes (414 beyond); at most {MAX_REQUEST_LINE}",
                                       "BYTES")
    limit_request_fields: int = _setting(DEFAULT_LIMITS["fields"], "most header fields in a "
                                         f"request (431 beyond); at most {MAX_REQUEST_FIELDS}",
                                         "N")
    limit_request_field_size: int = _setting(DEFAULT_LIMITS["field_size"], "longest header "
                                             "line, in bytes (431 beyond); at most "
                                             f"{MAX_REQUEST_LINE}", "BYTES")
    limit_request_body: int = _setting(DEFAULT_LIMITS["body_bytes"], "largest request body, in "
                                       f"bytes (413 beyond); at most {MAX_REQUEST_BODY} (1 TiB)",
                                       "BYTES")
    lenient_targets: bool = _setting(DEFAULT_LIMITS["lenient_targets"], "accept raw bytes "
                                     "above 0x7f (UTF-8) in request targets, which RFC 9112 "
                                     "answers with 400; other invalid targets still get it")
    limit_max_requests: Optional[int] = _setting(None, "recycle a worker process after about "
                                                 "this many requests (a new one takes over "
                                                 "first)", "N")
    limit_max_requests_jitter: int = _setting(0, "add 0..N at random to --limit-max-requests "
                                              "per worker, so they do not all restart at once",
                                              "N")
    # ---- logging
    access_log: bool = _setting(False, "log every request, gunicorn-style (static routes are "
                                "then answered from Python, so they are logged too)")
    access_log_format: str = _setting(DEFAULT_FORMAT, "layout of an access-log line: "
                                      "gunicorn's atoms (h remote address, t time, r request "
                                      "line, s status, B/b body bytes, D/L duration, {name}i a "
                                      "request header, ...; see fastloop/_accessformat.py)",
                                      "FORMAT")
    access_log_json: bool = _setting(False, "write each access-log line as one JSON object "
                                     "with the same fields, named")
    access_log_file: str = _setting("-", "where access-log lines go: a file (appended) or - "
                                    "for stderr (ignored with --log-config, which decides)",
                                    "PATH")
    log_level: str = _setting("info", "level of the error log", choices=LOG_LEVELS)
    log_config: Optional[str] = _setting(None, "configure all logging from this file: JSON "
                                         "for logging.config.dictConfig, else INI for "
                                         "fileConfig", "FILE")
    # ---- behind a proxy (fastloop/proxy.py)
    proxy_headers: bool = _setting(False, "believe X-Forwarded-For/-Proto/-Host and Forwarded "
                                   "(RFC 7239) from --forwarded-allow-ips peers: they set the "
                                   "client address, scheme and host handlers see")
    forwarded_allow_ips: str = _setting("127.0.0.1", "comma-separated proxies to trust: IP "
                                        "addresses, networks (10.0.0.0/8), 'unix:' for Unix "
                                        "socket peers, or '*' for any", "LIST")
    root_path: Optional[str] = _setting(None, "the path prefix the application is served "
                                        "under behind a proxy: WSGI SCRIPT_NAME, "
                                        "Request.root_path", "PATH")
    # ---- metrics (fastloop/metrics.py)
    metrics: bool = _setting(False, "serve the counters of every worker in the Prometheus "
                             "text format on a listener of their own")
    metrics_address: str = _setting("127.0.0.1", "address of the metrics listener", "ADDR")
    metrics_port: int = _setting(9090, "port of the metrics listener (0 picks a free one)",
                                 "PORT")
    # ---- the application
    interface: str = _setting("auto", "what APP is: a fastloop App, an ASGI or WSGI "
                              "callable, or auto to detect it (an async callable is ASGI)",
                              choices=INTERFACES)
    lifespan: str = _setting("auto", "ASGI lifespan events: auto (if the application "
                             "supports them), on (it must), off", choices=LIFESPAN_MODES)
    loop: str = _setting("auto", "the asyncio loop an ASGI application runs on: auto (uvloop "
                         "when installed), asyncio, uvloop", choices=LOOPS)
    factory: bool = _setting(False, "APP is a factory: call it with no arguments to get the "
                             "application")
    # ---- WebSockets (ASGI applications; docs/websockets.md)
    ws: str = _setting("auto", "WebSocket upgrades: auto (served by the core, handed to the "
                       "application as websocket scopes) or none (served as plain HTTP)",
                       choices=WS_MODES)
    ws_max_size: int = _setting(16 * 1024 * 1024, "largest WebSocket message, in bytes after "
                                "inflating (close 1009 beyond)", "BYTES")
    ws_ping_interval: float = _setting(DEFAULT_TIMEOUTS["ws_ping"], "ping a quiet WebSocket "
                                       "after this long (0: never)", "SECONDS")
    ws_ping_timeout: float = _setting(DEFAULT_TIMEOUTS["ws_pong"], "close a WebSocket whose "
                                      "pong has not come this long after a ping", "SECONDS")
    ws_per_message_deflate: bool = _setting(True, "offer permessage-deflate compression "
                                            "(RFC 7692) to WebSocket clients")
    # ---- development
    reload: bool = _setting(False, "restart the server when a source file changes (watchfiles "
                            "when installed, else polling)")
    reload_dir: Optional[str] = _setting(None, "with --reload, a directory to watch (repeat "
                                         "the flag for more; default: the current one)", "DIR")
    reload_include: Optional[str] = _setting(None, "with --reload, a glob of files that count "
                                             "(repeatable; default: *.py)", "GLOB")
    reload_exclude: Optional[str] = _setting(None, "with --reload, a glob of files to ignore "
                                             "(repeatable; default: .*, *.pyc, *~)", "GLOB")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Config":
        """Defaults, then FASTLOOP_* variables from environ (os.environ by default), then
        overrides; validated. Unknown override names raise TypeError, bad values ValueError."""
        environ = os.environ if environ is None else environ
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(overrides) - set(names) - set(RENAMED)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: Dict[str, Any] = {}
        for name, f in names.items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse(ENV_PREFIX + name.upper(), raw, f)
        for old, new in RENAMED.items():
            raw = environ.get(ENV_PREFIX + old.upper())
            if raw is not None:
                old_value = _parse(ENV_PREFIX + old.upper(), raw, names[new])
                rename_deprecated(values, {old: old_value}, ENV_PREFIX + old.upper(),
                                  ENV_PREFIX + new.upper())
        overrides = dict(overrides)
        for old, new in RENAMED.items():
            if old in overrides:
                rename_deprecated(overrides, {old: overrides.pop(old)}, old, new, stacklevel=2)
        values.update(overrides)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raises ValueError naming the first setting out of range."""
        def positive(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")

        self._validate_operations()
        for name in ("workers", "threads", "runtime_threads", "backlog", "timeout_keep_alive",
                     "timeout_request_header", "limit_request_line", "limit_request_fields",
                     "limit_request_field_size", "limit_request_body"):
            positive(name)
        for name in ("limit_concurrency", "limit_max_requests"):
            positive(name, allow_none=True)
        if self.timeout_graceful_shutdown < 0 or self.limit_max_requests_jitter < 0:
            raise ValueError("timeout_graceful_shutdown and limit_max_requests_jitter are >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {self.port}")
        for name, top in (("limit_request_fields", MAX_REQUEST_FIELDS),
                          ("limit_request_line", MAX_REQUEST_LINE),
                          ("limit_request_field_size", MAX_REQUEST_LINE),
                          ("limit_request_body", MAX_REQUEST_BODY)):
            if getattr(self, name) > top:
                raise ValueError(f"{name} is at most {top}, not {getattr(self, name)!r}")
        for name in ("dispatch", "log_level", "interface", "lifespan", "loop", "ws"):
            choices = _field(name).metadata["choices"]
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        if self.uds is not None and self.fd is not None:
            raise ValueError("give uds or fd, not both")
        self._validate_front()
        if (self.uds is not None or self.fd is not None) and self.dispatch == "reuseport" \
                and self.runtime_threads > 1:
            raise ValueError("one Unix or inherited socket cannot be spread over event loops "
                             "(runtime_threads) with SO_REUSEPORT: use dispatch acceptor")

    def _validate_operations(self) -> None:
        self.uds_mode()
        if self.timeout_worker is not None and self.timeout_worker <= 0:
            raise ValueError(f"timeout_worker must be a positive number, not {self.timeout_worker!r}")
        if self.reload and (self.workers > 1 or self.limit_max_requests is not None):
            raise ValueError("--reload runs one server process: not with workers > 1 or "
                             "limit_max_requests")

    def _validate_front(self) -> None:
        """The proxy, root-path and metrics settings."""
        TrustedPeers(self.forwarded_allow_ips)
        check_format(self.access_log_format)
        if self.root_path is not None:
            self.root_path = check_root_path(self.root_path) or None
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in 0..65535, not {self.metrics_port}")

    def supervised(self) -> bool:
        """True when a supervisor runs worker processes (else the server runs in-process)."""
        return self.workers > 1 or self.limit_max_requests is not None

    def uds_mode(self) -> int:
        """uds_perms as a mode: octal text ("660", "0o660"), or an int given from Python."""
        value: object = self.uds_perms
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        else:
            try:
                mode = int(str(value).strip(), 8)  # "0o660" too
            except ValueError:
                raise ValueError(f"uds_perms must be an octal mode such as 660, not "
                                 f"{value!r}") from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"uds_perms must be within 0..777 (octal), not {oct(mode)}")
        return mode

    @staticmethod
    def paths(value: Optional[str]) -> List[str]:
        """A repeatable setting's values (reload_dir, ...): given as a comma-separated list."""
        return [part.strip() for part in (value or "").split(",") if part.strip()]

    # ---- what the Server takes ---------------------------------------------------------

    def limits(self) -> dict:
        """The `limits` argument of fastloop.Server."""
        return {
            "request_line": self.limit_request_line,
            "fields": self.limit_request_fields,
            "field_size": self.limit_request_field_size,
            "body_bytes": self.limit_request_body,
            "lenient_targets": self.lenient_targets,
        }

    def timeouts(self) -> dict:
        """The `timeouts` argument of fastloop.Server."""
        return {"header": self.timeout_request_header, "idle": self.timeout_keep_alive,
                "ws_ping": self.ws_ping_interval, "ws_pong": self.ws_ping_timeout}

    def server_kwargs(self) -> dict:
        """Keyword arguments of fastloop.Server for these settings (the listening socket
        aside: host and port, or uds; the caller passes inherited sockets itself)."""
        return {
            "host": self.host, "port": self.port, "uds": self.uds, "threads": self.threads,
            "runtime_threads": self.runtime_threads,
            "dispatch": self.dispatch, "backlog": self.backlog, "limits": self.limits(),
            "timeouts": self.timeouts(), "limit_concurrency": self.limit_concurrency,
        }


def rename_deprecated(values: Dict[str, Any], old: Dict[str, Any], old_label: str,
                      new_label: str, stacklevel: int = 0) -> None:
    """Moves a deprecated setting (old: {old name: value}, at most one) into values under its
    new name (RENAMED), with a warning naming both spellings as the user wrote them. Given from
    Python (stacklevel > 0), a DeprecationWarning; from a flag or the environment, which a
    DeprecationWarning filter would hide, a logged warning. Both spellings at once, with
    different values: ValueError. stacklevel counts as warnings.warn's does, from the caller."""
    for name, value in old.items():
        new = RENAMED[name]
        if new in values and values[new] != value:
            raise ValueError(f"{old_label} is the old spelling of {new_label}: give one of "
                             f"them, not both ({value!r} and {values[new]!r})")
        message = (f"{old_label} is deprecated and will be removed in the next release: use "
                   f"{new_label} (handler threads; event loops are runtime_threads)")
        if stacklevel:
            warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)
        else:
            log.warning("fastloop: %s", message)
        values[new] = value


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(Config) if f.name == name)


def setting_type(f: dataclasses.Field) -> type:
    """int, float, str or bool: what a setting's text (flag or variable) is parsed into."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, t in (("bool", bool), ("int", int), ("float", float)):
        if name in kind:
            return t
    return str


def _parse(source: str, raw: str, f: dataclasses.Field) -> Any:
    t = setting_type(f)
    text = raw.strip()
    if t is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{source}: expected 1/0, true/false, yes/no or on/off, not {raw!r}")
    if text == "" and f.default is None:
        return None
    try:
        return t(text)
    except ValueError:
        what = "an integer" if t is int else "a number"
        raise ValueError(f"{source}: expected {what}, not {raw!r}") from None
