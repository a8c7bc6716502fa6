"""Listening sockets: bind TCP and Unix sockets, adopt an inherited one, and say in one line
why one cannot be had.

Every way of serving binds through here: fastloop.Server when it binds itself, and
`fastloop serve` / fastloop.run, which bind before anything else (before forking workers, and
once for the lifetime of a --reload session) and hand the sockets over. A failure raises
StartupError, whose message names the address or path and the cause; the command prints it
and exits with STARTUP_FAILURE, as uvicorn does.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any, List, Optional

__all__ = ["StartupError", "STARTUP_FAILURE", "Listeners", "bind_tcp", "bind_unix",
           "inherited_socket", "port_in_use"]

STARTUP_FAILURE = 3  # the exit status when the server cannot start (uvicorn's)
DEFAULT_UDS_PERMS = 0o666  # uvicorn's: a proxy running as another user can connect


class StartupError(OSError):
    """The listening socket could not be had; str() is one line naming the address or path.
    An OSError, as the failure of bind() or getaddrinfo() it replaces."""


def _why(exc: OSError) -> str:
    hints = {
        errno.EADDRINUSE: "address already in use",
        errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
        errno.EADDRNOTAVAIL: "address not available on this machine",
    }
    return hints.get(exc.errno or 0, exc.strerror or str(exc))


def _tcp_name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_in_use(family: int, addr: Any) -> bool:
    """True if some socket already listens on addr. The probe binds without SO_REUSEPORT (a
    listener in a SO_REUSEPORT group refuses it) but with SO_REUSEADDR (so TIME_WAIT left by
    an earlier run does not count)."""
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return True
        raise
    finally:
        probe.close()
    return False


def bind_tcp(host: str, port: int, count: int, reuseport: bool, backlog: int,
             share: bool = True) -> list:
    """count listening, non-blocking TCP sockets on host:port (port 0: one free port shared by
    all). With reuseport they form one SO_REUSEPORT group, which the kernel balances; with
    share=False a port where something already listens is refused instead of joined. The
    caller owns the sockets; on failure none is left open and StartupError says why."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise StartupError(f"cannot use host {host!r}: {reason}") from None
    family, _, _, _, sockaddr = info[0]
    addr: Any = sockaddr  # (host, port), or (host, port, flowinfo, scope_id) for IPv6
    name = _tcp_name(host, port)
    socks: list = []
    try:
        if reuseport and not share and port != 0 and port_in_use(family, addr):
            raise StartupError(f"{name}: address already in use (another server listens there; "
                               "--reuse-port shares the port with it)")
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            if addr[1] == 0:  # the rest share the port the first one got
                addr = (addr[0], sock.getsockname()[1]) + tuple(addr[2:])
            sock.listen(backlog)  # the kernel caps it at net.core.somaxconn
            sock.setblocking(False)
    except BaseException as exc:
        for sock in socks:
            sock.close()
        if isinstance(exc, OSError) and not isinstance(exc, StartupError):
            raise StartupError(f"{name}: {_why(exc)}") from None
        raise
    return socks


def _replace_stale(path: str) -> None:
    """Makes way for a new socket at path: a socket file nobody listens on any more is removed;
    anything else (a live socket, a regular file, a directory) raises StartupError."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path}: exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:  # left behind by a server that is gone
        os.unlink(path)
        return
    except OSError as exc:
        raise StartupError(f"{path}: cannot tell whether a server still uses this socket "
                           f"({exc.strerror or exc})") from None
    finally:
        probe.close()
    raise StartupError(f"{path}: another server is listening on this socket")


def bind_unix(path: str, backlog: int, perms: int = DEFAULT_UDS_PERMS) -> socket.socket:
    """A listening, non-blocking Unix socket at path with mode perms, replacing a stale socket
    file there (see _replace_stale). The caller owns it and unlinks path when done."""
    _replace_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # After bind, the file has the umask's mode (more restrictive, if anything): the
        # socket accepts nobody before listen(), so there is no window to close.
        os.chmod(path, perms)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENOENT:
            raise StartupError(f"{path}: directory {os.path.dirname(path) or '.'!r} does not "
                               "exist") from None
        raise StartupError(f"{path}: {_why(exc)}") from None
    return sock


def inherited_socket(fd: int) -> socket.socket:
    """The listening stream socket at descriptor fd (--fd), non-blocking. Raises StartupError
    if fd is not one."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"--fd {fd}: not a socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise StartupError(f"--fd {fd}: not a stream socket")
    accepting = getattr(socket, "SO_ACCEPTCONN", None)
    if accepting is not None and not sock.getsockopt(socket.SOL_SOCKET, accepting):
        sock.detach()
        raise StartupError(f"--fd {fd}: the socket is not listening")
    sock.setblocking(False)
    return sock


class Listeners:
    """The listening sockets of a run, per worker slot, with the URL they answer on. Whoever
    made it owns them: close() closes every socket and removes the Unix socket file it bound
    (never one inherited with --fd). `metrics` is the --metrics listener (fastloop.metrics),
    bound by the command with the others but closed apart: close() leaves it open, since it
    is scraped while the workers finish, after the serving sockets are closed."""

    def __init__(self, sets: List[List[socket.socket]], url: str,
                 unix_path: Optional[str] = None) -> None:
        self.sets = sets
        self.url = url
        self.unix_path = unix_path
        self.metrics: Optional[socket.socket] = None

    def all(self) -> List[socket.socket]:
        """Each socket once (slots may share one)."""
        return list({id(s): s for socks in self.sets for s in socks}.values())

    def close(self) -> None:
        for sock in self.all():
            sock.close()
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except FileNotFoundError:
                pass
            self.unix_path = None


def listeners_for(config: Any, slots: int) -> Listeners:
    """Binds (or adopts, for --fd) the listening sockets of `slots` worker processes per config
    (a fastloop.Config). On Linux (reuseport dispatch) each slot gets `runtime_threads` sockets
    of one SO_REUSEPORT group, so the kernel balances connections over every event loop of every
    worker; otherwise (acceptor dispatch, a Unix socket, an inherited --fd) all slots share one."""
    if config.fd is not None:
        sock = inherited_socket(config.fd)
        return Listeners([[sock]] * slots, f"fd:{config.fd}")
    if config.uds:
        sock = bind_unix(config.uds, config.backlog, config.uds_mode())
        return Listeners([[sock]] * slots, f"unix:{config.uds}", config.uds)
    from .server import default_dispatch  # server imports this module
    dispatch = config.dispatch or default_dispatch()
    if dispatch == "reuseport":
        loops = config.runtime_threads
        socks = bind_tcp(config.host, config.port, slots * loops, True, config.backlog,
                         share=config.reuse_port)
        sets = [socks[i * loops:(i + 1) * loops] for i in range(slots)]
    else:
        sets = [bind_tcp(config.host, config.port, 1, False, config.backlog)] * slots
    host, port = sets[0][0].getsockname()[:2]
    return Listeners(sets, f"http://{_tcp_name(host, port)}/")
