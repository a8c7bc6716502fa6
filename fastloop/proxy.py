"""Proxy headers and the root path: what a handler sees of a request that came through a proxy.

Theory of operation. Behind a reverse proxy the connection's peer is the proxy; the client's
address, the scheme it used and the Host it asked for travel in headers the proxy adds:
X-Forwarded-For / X-Forwarded-Proto / X-Forwarded-Host (the de facto ones) or RFC 7239's
Forwarded (for=, proto=, host=). Anyone can send these headers, so they are believed only from
a trusted peer (--forwarded-allow-ips), and within a chain only as far back as the hops are
trusted proxies themselves:

    X-Forwarded-For: <client>, <proxy 1>, <proxy 2>       (peer: proxy 3)

Each proxy appends the address it received the request from, so only the right end was written
by proxies we trust; anything to its left may have come from the client. The client is the
rightmost entry that is not a trusted proxy (as nginx's real_ip_recursive and uvicorn do); if
every entry is trusted, the leftmost. A header that does not parse is ignored whole (the peer
stays the client): a header we cannot read is never half believed.

When both kinds are present, X-Forwarded-* wins, field by field, because that is what nginx,
HAProxy and most proxies set by default; a proxy that sets only Forwarded should remove any
X-Forwarded-* the client sent (otherwise the client can spoof them).

Over a Unix socket the peer has no address: it is trusted when the list holds "*" or "unix:".

FrontApp applies the result (and --root-path) to each request before its handler runs, through
the Request's override_* fields, which Request.client / scheme / host / root_path return and
the WSGI adapter turns into REMOTE_ADDR, wsgi.url_scheme, HTTP_HOST and SCRIPT_NAME.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from .app import App
from .routes import RouteTable

__all__ = ["TrustedPeers", "ProxyHeaders", "FrontApp", "parse_forwarded", "parse_node",
           "check_root_path"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
# A node as the headers name it: (host, port). host is a normalised IP address, "unknown" or an
# RFC 7239 obfuscated identifier ("_hidden"); port is 0 when absent or obfuscated.
Node = Tuple[str, int]

SCHEMES = ("http", "https")
# RFC 9110 tchar: what an unquoted Forwarded token or value may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+\Z")
# RFC 3986 host (reg-name, IPv4 or IP literal) with an optional port: what a Host may hold.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(:[0-9]{0,5})?\Z")
UNIX = "unix:"  # the --forwarded-allow-ips entry that trusts Unix socket peers
# ipaddress costs microseconds per call, and the same proxies and clients come back request
# after request: parsed nodes and trust decisions are kept, this many of each.
CACHE_SIZE = 4096
CACHED_KEY_BYTES = 512  # longest header lines (all four together) whose answer is kept
# The headers read, in the order ProxyHeaders._from_fields takes them.
_FIELDS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded")
_FIELD_INDEX = {name: i for i, name in enumerate(_FIELDS)}


class TrustedPeers:
    """The --forwarded-allow-ips list: "*", or comma-separated IP addresses, CIDR networks
    (10.0.0.0/8, fd00::/8) and "unix:" (Unix socket peers). Raises ValueError on an entry that
    is none of these."""

    def __init__(self, spec: Union[str, Sequence[str]]) -> None:
        entries = spec.split(",") if isinstance(spec, str) else list(spec)
        self.everyone = False
        self.unix = False
        self.networks: List[Network] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self.everyone = self.unix = True
            elif entry == UNIX:
                self.unix = True
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"forwarded_allow_ips: {entry!r} is not an IP address, "
                                     f"a network, '*' or '{UNIX}'") from None
        self.trusts = functools.lru_cache(maxsize=CACHE_SIZE)(self._trusts)

    def _trusts(self, host: str) -> bool:
        """Whether an address (text) is a trusted proxy. Not an IP address: never.
        (Called as self.trusts, cached.)"""
        if self.everyone:
            return True
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.networks)

    def trusts_peer(self, peer: Any) -> bool:
        """Whether a connection's peer, as Request.client gives it before any override
        ((host, port) over TCP, a path or "" over a Unix socket), is trusted."""
        if isinstance(peer, tuple):
            return self.trusts(peer[0])
        return self.unix and isinstance(peer, str)


def _ip(text: str) -> Optional[IPAddress]:
    """text as an IP address, an IPv4-mapped IPv6 one as IPv4; None if it is not one."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=CACHE_SIZE)
def parse_node(text: str) -> Optional[Node]:
    """An RFC 7239 node ("192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:443", "unknown",
    "_hidden:_port") or a bare IPv6 address as X-Forwarded-For carries it, as (host, port);
    None if it is none of these."""
    text = text.strip()
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
        ip = _ip(host)
        if not isinstance(ip, ipaddress.IPv6Address):
            return None
        name = str(ip)
    elif text.count(":") > 1:  # a bare IPv6 address (X-Forwarded-For), no port
        ip = _ip(text)
        if ip is None:
            return None
        name = str(ip)
    else:
        host, _, port_text = text.partition(":")
        if host == "unknown" or _OBFUSCATED.match(host):
            name = host
        else:
            ip = _ip(host)
            if not isinstance(ip, ipaddress.IPv4Address) or ":" in host:
                return None
            name = str(ip)
        if ":" in text and not port_text:
            return None
    if not port_text:
        return name, 0
    if _OBFUSCATED.match(port_text):
        return name, 0
    if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
        return None
    return name, int(port_text)


def parse_forwarded(values: Sequence[str]) -> Optional[List[dict]]:
    """The elements of RFC 7239 Forwarded header lines (joined as one list, in order), each a
    {parameter (lower-cased): value (unquoted)} dict; None if any line is malformed or a
    parameter repeats within an element."""
    elements: List[dict] = []
    for line in values:
        pos, end = 0, len(line)
        element: dict = {}
        while True:
            pos = _skip_space(line, pos)
            if pos < end and line[pos] not in ",;":
                m = _TOKEN.match(line, pos)
                if m is None or m.end() >= end or line[m.end()] != "=":
                    return None
                name = m.group().lower()
                pos = m.end() + 1
                if pos < end and line[pos] == '"':
                    parsed = _quoted(line, pos)
                    if parsed is None:
                        return None
                    value, pos = parsed
                else:
                    m = _TOKEN.match(line, pos)
                    if m is None:
                        return None
                    value, pos = m.group(), m.end()
                if name in element:
                    return None
                element[name] = value
                pos = _skip_space(line, pos)
            if pos >= end or line[pos] == ",":
                if element:
                    elements.append(element)
                element = {}
                if pos >= end:
                    break
            elif line[pos] != ";":
                return None
            pos += 1
    return elements


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _quoted(text: str, pos: int) -> Optional[Tuple[str, int]]:
    """The quoted-string starting at text[pos] ('"'), unescaped, and the position after it."""
    out: List[str] = []
    pos += 1
    while pos < len(text):
        ch = text[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\":
            pos += 1
            if pos >= len(text):
                return None
            ch = text[pos]
        if ch < " " and ch != "\t" or ch == "\x7f":
            return None
        out.append(ch)
        pos += 1
    return None


def _split_list(values: Sequence[str]) -> List[str]:
    """Comma-separated header lines as one list of stripped, non-empty items."""
    return [item.strip() for line in values for item in line.split(",") if item.strip()]


class ProxyHeaders:
    """Reads the client, scheme and host a trusted proxy reports about a request."""

    def __init__(self, trusted: Union[TrustedPeers, str]) -> None:
        self.trusted = trusted if isinstance(trusted, TrustedPeers) else TrustedPeers(trusted)
        # The answer depends on the header lines alone: a proxy sends the same few again and
        # again, so they are kept (short ones only, so a client cannot fill memory).
        self._cached = functools.lru_cache(maxsize=CACHE_SIZE)(
            lambda key: self._from_fields(*key))

    def pick(self, nodes: List[Node]) -> Optional[int]:
        """The index of the client in a chain (leftmost first): the rightmost node that is not
        a trusted proxy, else the leftmost; None for an empty chain."""
        for i in range(len(nodes) - 1, -1, -1):
            if not self.trusted.trusts(nodes[i][0]):
                return i
        return 0 if nodes else None

    def resolve(self, peer: Any,
                headers: Any) -> Tuple[Optional[Node], Optional[str], Optional[str]]:
        """(client, scheme, host) from the headers (a fastloop Headers) of a request whose
        connection's peer is `peer`; each None when not reported, not trusted or malformed."""
        if not self.trusted.trusts_peer(peer):
            return None, None, None
        found: List[Tuple[str, ...]] = [(), (), (), ()]
        size = 0
        for name, value in headers:
            i = _FIELD_INDEX.get(name)
            if i is not None:
                found[i] += (value,)
                size += len(value)
        if not size:
            return None, None, None
        key = tuple(found)
        if size <= CACHED_KEY_BYTES:
            return self._cached(key)
        return self._from_fields(*key)  # a long chain (a client's junk, maybe): not kept

    def _from_fields(self, xff: Sequence[str], xfp: Sequence[str], xfh: Sequence[str],
                     forwarded: Sequence[str]) -> Tuple[Optional[Node], Optional[str],
                                                        Optional[str]]:
        """resolve() for a trusted peer, from the lines of each header (in _FIELDS order)."""
        element = None
        if forwarded and not (xff and xfp and xfh):
            element = self._forwarded_element(forwarded)
        client: Optional[Node] = None
        index: Optional[int] = None  # the client's hop in X-Forwarded-For
        count = 0
        if xff:
            nodes = [parse_node(item) for item in _split_list(xff)]
            if nodes and None not in nodes:
                index = self.pick(nodes)  # type: ignore[arg-type]
                count = len(nodes)
                client = nodes[index] if index is not None else None
        elif element is not None and "for" in element:
            client = parse_node(element["for"])
        if xfp:
            scheme = _scheme(_hop_item(xfp, index, count))
        else:
            scheme = _scheme(element.get("proto")) if element is not None else None
        if xfh:
            host = _host(_hop_item(xfh, index, count))
        else:
            host = _host(element.get("host")) if element is not None else None
        return client, scheme, host

    def _forwarded_element(self, lines: Sequence[str]) -> Optional[dict]:
        """The Forwarded element that describes the client's hop, None if malformed."""
        elements = parse_forwarded(lines)
        if not elements:
            return None
        nodes: List[Node] = []
        for element in elements:
            node = parse_node(element["for"]) if "for" in element else None
            if "for" in element and node is None:
                return None
            # An element without for= is a hop we cannot judge: it stops the walk like an
            # untrusted address would.
            nodes.append(node if node is not None else ("unknown", 0))
        index = self.pick(nodes)
        return elements[index] if index is not None else None

    def apply(self, request: Any) -> None:
        """Sets request's override fields from trusted proxy headers (nothing otherwise)."""
        client, scheme, host = self.resolve(request.client, request.headers)
        if client is not None:
            request.override_client = client
        if scheme is not None:
            request.override_scheme = scheme
        if host is not None:
            request.override_host = host


def _hop_item(values: Sequence[str], index: Optional[int], count: int) -> Optional[str]:
    """The item of an X-Forwarded-Proto/-Host list for the client's hop: the one at the
    client's index when the list has one item per X-Forwarded-For entry, else the rightmost
    (written by the proxy nearest to us). None for an empty list."""
    items = _split_list(values)
    if not items:
        return None
    return items[index] if index is not None and len(items) == count else items[-1]


def _scheme(value: Optional[str]) -> Optional[str]:
    value = (value or "").strip().lower()
    return value if value in SCHEMES else None


def _host(value: Optional[str]) -> Optional[str]:
    value = (value or "").strip()
    return value if value and _HOST.match(value) else None


def check_root_path(root_path: str) -> str:
    """root_path normalised ("" or "/prefix", no trailing slash); ValueError if invalid."""
    root = root_path.strip().rstrip("/")
    if root and (not root.startswith("/") or any(ch in root for ch in "?#\r\n ")):
        raise ValueError(f"root_path must be empty or a path starting with '/', not {root_path!r}")
    return root


class FrontApp(App):
    """app, with proxy headers (when `proxy` is given) and the root path applied to each
    request before its handler runs (its 404 and 405 answers included, so the access log
    shows the real client). Built after app's routes are registered, like the access log's
    wrapper; static routes stay in C (their answer depends on neither)."""

    def __init__(self, app: App, proxy: Optional[ProxyHeaders] = None,
                 root_path: str = "") -> None:
        super().__init__()
        self.inner = app
        self.proxy = proxy
        self.root_path = check_root_path(root_path)

    def route_table(self) -> RouteTable:
        # The core's own rejections (for the access log) go to the inner table's on_rejected
        # as they are: no header was trusted, so the client is the peer.
        return self.inner.route_table().wrapped(self._fronted)

    def _counters(self) -> dict:
        return dict(getattr(self.inner, "_counters", dict)())

    def prepare(self, request: Any) -> None:
        if self.root_path:
            request.override_root_path = self.root_path
        if self.proxy is not None:
            self.proxy.apply(request)

    def _fronted(self, handler: Callable) -> Callable:
        prepare = self.prepare

        def fronted(request: Any, **params: Any) -> Any:
            prepare(request)
            return handler(request, **params)

        return fronted
