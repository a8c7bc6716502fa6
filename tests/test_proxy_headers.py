"""Proxy headers and the root path (fastloop/proxy.py): the parsers and the hop walk as tables,
then real sockets: a trusted peer (127.0.0.1) sets client, scheme and host for a fastloop App
and for WSGI; an untrusted one (a client bound to 127.0.0.2) spoofs in vain; malformed headers
are ignored and never cost a 500; over a Unix socket "unix:" decides."""

from __future__ import annotations

import json
import os
import socket

import pytest
from helpers import LOOPBACK, running_server

import fastloop
from fastloop._core import Headers
from fastloop.config import Config
from fastloop.proxy import ProxyHeaders, TrustedPeers, parse_forwarded, parse_node
from fastloop.serve import as_app

UNTRUSTED = "127.0.0.2"  # another loopback address: a peer that is not in the trusted list

# ---- parsers -------------------------------------------------------------------------------

NODES = [
    # (name, text, expected)
    ("ipv4", "192.0.2.60", ("192.0.2.60", 0)),
    ("ipv4 port", "192.0.2.60:8080", ("192.0.2.60", 8080)),
    ("ipv6 bracketed port", "[2001:db8:cafe::17]:4711", ("2001:db8:cafe::17", 4711)),
    ("ipv6 bracketed", "[2001:db8::1]", ("2001:db8::1", 0)),
    ("ipv6 bare", "2001:db8::1", ("2001:db8::1", 0)),
    ("ipv6 normalised", "2001:DB8:0::1", ("2001:db8::1", 0)),
    ("v4-mapped", "::ffff:10.0.0.1", ("10.0.0.1", 0)),
    ("unknown", "unknown", ("unknown", 0)),
    ("obfuscated", "_hidden", ("_hidden", 0)),
    ("obfuscated port", "_hidden:_p1", ("_hidden", 0)),
    ("spaces", "  192.0.2.1 ", ("192.0.2.1", 0)),
    ("hostname", "evil.example", None),
    ("empty", "", None),
    ("port too big", "192.0.2.1:70000", None),
    ("port empty", "192.0.2.1:", None),
    ("port text", "192.0.2.1:http", None),
    ("ipv4 in brackets", "[192.0.2.1]", None),
    ("bracket open", "[2001:db8::1", None),
    ("junk after bracket", "[2001:db8::1]x", None),
    ("bad octet", "300.1.1.1", None),
    ("script", "<script>", None),
]


@pytest.mark.parametrize("name,text,expected", NODES, ids=[n[0] for n in NODES])
def test_parse_node(name, text, expected):
    assert parse_node(text) == expected


FORWARDED = [
    ("one", ['for=192.0.2.60;proto=http;by=203.0.113.43'],
     [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]),
    ("case and spaces", ['For="_gazonk" ; Proto=https'], [{"for": "_gazonk", "proto": "https"}]),
    ("list", ['for=192.0.2.43, for=198.51.100.17'], [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),
    ("two lines", ['for=192.0.2.43', 'for=198.51.100.17;host=a.example'],
     [{"for": "192.0.2.43"}, {"for": "198.51.100.17", "host": "a.example"}]),
    ("quoted ipv6", ['for="[2001:db8:cafe::17]:4711"'], [{"for": "[2001:db8:cafe::17]:4711"}]),
    ("quoted comma", ['for="a,b";host="x.example"'], [{"for": "a,b", "host": "x.example"}]),
    ("escape", [r'for="\"x\\"'], [{"for": '"x\\'}]),
    ("empty elements", [', ,for=192.0.2.1,'], [{"for": "192.0.2.1"}]),
    ("unquoted ipv6", ['for=[2001:db8::1]'], None),
    ("no value", ['for='], None),
    ("no equals", ['for'], None),
    ("open quote", ['for="192.0.2.1'], None),
    ("repeated parameter", ['for=192.0.2.1;for=192.0.2.2'], None),
    ("junk after value", ['for=192.0.2.1 x'], None),
    ("control in quotes", ['for="a\x01b"'], None),
]


@pytest.mark.parametrize("name,lines,expected", FORWARDED, ids=[f[0] for f in FORWARDED])
def test_parse_forwarded(name, lines, expected):
    assert parse_forwarded(lines) == expected


def test_trusted_peers_list():
    peers = TrustedPeers("127.0.0.1, 10.0.0.0/8,fd00::/8")
    assert peers.trusts("127.0.0.1") and peers.trusts("10.1.2.3") and peers.trusts("fd00::5")
    assert peers.trusts("::ffff:10.0.0.1")  # an IPv4-mapped peer on a dual-stack socket
    assert not peers.trusts("127.0.0.2") and not peers.trusts("11.0.0.1")
    assert not peers.trusts("unknown") and not peers.trusts("_hidden")
    assert not peers.trusts_peer("/run/app.sock") and not peers.trusts_peer("")
    assert peers.trusts_peer(("10.0.0.9", 5000)) and not peers.trusts_peer(None)
    assert TrustedPeers("unix:").trusts_peer("") and not TrustedPeers("unix:").trusts("127.0.0.1")
    star = TrustedPeers("*")
    assert star.trusts("203.0.113.9") and star.trusts_peer("") and star.trusts("_x")
    for bad in ("localhost", "10.0.0.0/33", "1.2.3.4.5", "unix"):
        with pytest.raises(ValueError, match="forwarded_allow_ips"):
            TrustedPeers(bad)


def resolve(trusted, peer, *headers):
    return ProxyHeaders(trusted).resolve(peer, Headers((n.lower(), v) for n, v in headers))


PEER = ("127.0.0.1", 40000)
HOPS = [
    # (name, trusted, peer, headers, expected (client, scheme, host))
    ("untrusted peer", "127.0.0.1", ("127.0.0.2", 1),
     [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")], (None, None, None)),
    ("one hop", "127.0.0.1", PEER, [("X-Forwarded-For", "203.0.113.7")],
     (("203.0.113.7", 0), None, None)),
    ("client spoofs the left end", "127.0.0.1,10.0.0.0/8", PEER,
     [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.2")], (("203.0.113.7", 0), None, None)),
    ("all hops trusted: leftmost", "127.0.0.1,10.0.0.0/8", PEER,
     [("X-Forwarded-For", "10.0.0.3, 10.0.0.2")], (("10.0.0.3", 0), None, None)),
    ("star: leftmost", "*", ("198.51.100.1", 9), [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")],
     (("6.6.6.6", 0), None, None)),
    ("repeated lines join", "127.0.0.1,10.0.0.0/8", PEER,
     [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7, 10.0.0.2")],
     (("203.0.113.7", 0), None, None)),
    ("malformed entry: whole header ignored", "127.0.0.1", PEER,
     [("X-Forwarded-For", "203.0.113.7, not-an-ip")], (None, None, None)),
    ("proto and host", "127.0.0.1", PEER,
     [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "HTTPS"),
      ("X-Forwarded-Host", "shop.example:8443")], (("203.0.113.7", 0), "https", "shop.example:8443")),
    ("proto per hop", "127.0.0.1,10.0.0.0/8", PEER,
     [("X-Forwarded-For", "203.0.113.7, 10.0.0.2"), ("X-Forwarded-Proto", "https, http")],
     (("203.0.113.7", 0), "https", None)),
    ("proto not per hop: rightmost", "127.0.0.1,10.0.0.0/8", PEER,
     [("X-Forwarded-For", "203.0.113.7, 10.0.0.2"), ("X-Forwarded-Proto", "https")],
     (("203.0.113.7", 0), "https", None)),
    ("proto alone", "127.0.0.1", PEER, [("X-Forwarded-Proto", "https")], (None, "https", None)),
    ("bad proto and host ignored", "127.0.0.1", PEER,
     [("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Host", "a b/c")], (None, None, None)),
    ("forwarded", "127.0.0.1", PEER,
     [("Forwarded", 'for="[2001:db8::7]:4711";proto=https;host=shop.example')],
     (("2001:db8::7", 4711), "https", "shop.example")),
    ("forwarded chain", "127.0.0.1,10.0.0.0/8", PEER,
     [("Forwarded", 'for=6.6.6.6;proto=http, for=203.0.113.7;proto=https, for=10.0.0.2;proto=http')],
     (("203.0.113.7", 0), "https", None)),
    ("forwarded obfuscated", "127.0.0.1", PEER, [("Forwarded", "for=_abc;proto=https")],
     (("_abc", 0), "https", None)),
    ("forwarded unknown stops the walk", "127.0.0.1,10.0.0.0/8", PEER,
     [("Forwarded", "for=6.6.6.6, for=unknown, for=10.0.0.2")], (("unknown", 0), None, None)),
    ("forwarded malformed ignored", "127.0.0.1", PEER,
     [("Forwarded", 'for="203.0.113.7;proto=https')], (None, None, None)),
    ("x-forwarded wins field by field", "127.0.0.1", PEER,
     [("Forwarded", "for=6.6.6.6;proto=https;host=f.example"), ("X-Forwarded-For", "203.0.113.7")],
     (("203.0.113.7", 0), "https", "f.example")),
    ("long chain (not cached) walks the same", "127.0.0.1,10.0.0.0/8", PEER,
     [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, " + ", ".join(f"10.0.{i}.1" for i in range(60)))],
     (("203.0.113.7", 0), None, None)),
    ("unix peer untrusted", "127.0.0.1", "", [("X-Forwarded-For", "203.0.113.7")], (None, None, None)),
    ("unix peer trusted", "127.0.0.1,unix:", "", [("X-Forwarded-For", "203.0.113.7")],
     (("203.0.113.7", 0), None, None)),
]


@pytest.mark.parametrize("name,trusted,peer,headers,expected", HOPS, ids=[h[0] for h in HOPS])
def test_resolve(name, trusted, peer, headers, expected):
    assert resolve(trusted, peer, *headers) == expected


def test_resolve_twice_from_the_cache_and_for_another_peer():
    proxy = ProxyHeaders("127.0.0.1")
    headers = Headers([("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")])
    assert proxy.resolve(PEER, headers) == proxy.resolve(PEER, headers) == \
        (("203.0.113.7", 0), "https", None)
    # The cache is keyed on the header lines: the peer's trust is checked every time.
    assert proxy.resolve(("127.0.0.2", 1), headers) == (None, None, None)


# ---- over real sockets ---------------------------------------------------------------------

def echo_app() -> fastloop.App:
    app = fastloop.App()

    @app.get("/who")
    def who(request):
        return json.dumps({"client": request.client, "scheme": request.scheme,
                           "host": request.host, "root_path": request.root_path})

    @app.get("/users/{id:int}")
    def user(request, id):
        return json.dumps({"client": request.client, "id": id})

    app.static("/health", "ok")
    return app


def environ_app(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
            "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO")
    data = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def fronted(app, **settings):
    return as_app(app, Config(**settings))


def get(port, path, headers=(), source=LOOPBACK, family=socket.AF_INET, uds=None):
    """(status, body) of one GET with raw header lines, from a client bound to `source`."""
    if uds is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = uds
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((source, 0))
        target = (LOOPBACK, port)
    with sock:
        sock.settimeout(5)
        sock.connect(target)
        head = "".join(f"{n}: {v}\r\n" for n, v in headers)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: origin.test:8000\r\n{head}"
                     "Connection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), body


SPOOF = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
         ("X-Forwarded-Host", "shop.example"), ("Forwarded", "for=198.51.100.9;proto=https")]


def test_app_trusted_peer_sets_client_scheme_host():
    with running_server(fronted(echo_app(), proxy_headers=True)) as server:
        status, body = get(server.port, "/who", SPOOF)
        assert status == 200
        seen = json.loads(body)
        assert seen["client"] == ["203.0.113.7", 0]
        assert seen["scheme"] == "https" and seen["host"] == "shop.example"
        # A route with parameters goes through the other lookup path: the same result.
        assert json.loads(get(server.port, "/users/7", SPOOF)[1])["client"] == ["203.0.113.7", 0]
        # Static routes stay in C, proxy headers or not.
        assert get(server.port, "/health", SPOOF) == (200, b"ok")


def test_app_untrusted_peer_spoofs_in_vain():
    with running_server(fronted(echo_app(), proxy_headers=True), host="0.0.0.0") as server:
        seen = json.loads(get(server.port, "/who", SPOOF, source=UNTRUSTED)[1])
        assert seen["client"][0] == UNTRUSTED and seen["client"][1] > 0
        assert seen["scheme"] == "http" and seen["host"] == "origin.test:8000"
        # ... while the same request from the trusted address is believed (the test can fail).
        assert json.loads(get(server.port, "/who", SPOOF)[1])["client"] == ["203.0.113.7", 0]


def test_proxy_headers_off_by_default():
    with running_server(fronted(echo_app())) as server:
        seen = json.loads(get(server.port, "/who", SPOOF)[1])
        assert seen["client"][0] == LOOPBACK and seen["scheme"] == "http"
        assert seen["host"] == "origin.test:8000" and seen["root_path"] == ""


def test_multi_hop_chain_over_sockets():
    app = fronted(echo_app(), proxy_headers=True, forwarded_allow_ips="127.0.0.1,10.0.0.0/8")
    with running_server(app) as server:
        chain = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.1")]
        assert json.loads(get(server.port, "/who", chain)[1])["client"] == ["203.0.113.7", 0]


MALFORMED = [
    [("X-Forwarded-For", "203.0.113.7, <script>")],
    [("X-Forwarded-For", ",,,")],
    [("X-Forwarded-For", "[::1")],
    [("X-Forwarded-For", "1.2.3.4:99999")],
    [("X-Forwarded-Proto", "javascript")],
    [("X-Forwarded-Host", "evil.example/path")],
    [("Forwarded", 'for="unterminated')],
    [("Forwarded", "for=[::1]:80")],
    [("Forwarded", "for=1.2.3.4;for=5.6.7.8")],
    [("Forwarded", ";;;=")],
    [("Forwarded", "for=\x80\xff"), ("X-Forwarded-For", "\xe9")],
]


@pytest.mark.parametrize("headers", MALFORMED)
def test_malformed_headers_ignored_never_500(headers):
    for app in (echo_app(), fastloop.wsgi.WSGIApp(environ_app)):
        with running_server(fronted(app, proxy_headers=True)) as server:
            status, body = get(server.port, "/who", headers)
            assert status == 200
            seen = json.loads(body)
            if "client" in seen:
                assert seen["client"][0] == LOOPBACK and seen["scheme"] == "http"
                assert seen["host"] == "origin.test:8000"
            else:
                assert seen["REMOTE_ADDR"] == LOOPBACK and seen["wsgi.url_scheme"] == "http"
                assert seen["HTTP_HOST"] == "origin.test:8000"


def test_wsgi_environ_from_trusted_proxy():
    app = fastloop.wsgi.WSGIApp(environ_app)
    with running_server(fronted(app, proxy_headers=True, root_path="/shop/")) as server:
        env = json.loads(get(server.port, "/shop/cart", [
            ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "shop.example")])[1])
        assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "0"
        assert env["wsgi.url_scheme"] == "https" and env["HTTP_HOST"] == "shop.example"
        assert env["SERVER_NAME"] == "shop.example" and env["SERVER_PORT"] == "443"
        assert env["SCRIPT_NAME"] == "/shop" and env["PATH_INFO"] == "/cart"
        # A proxy that already stripped the prefix: PATH_INFO is the path as it came.
        env = json.loads(get(server.port, "/cart", [("Forwarded", 'for="[2001:db8::7]:4711"')])[1])
        assert env["SCRIPT_NAME"] == "/shop" and env["PATH_INFO"] == "/cart"
        assert env["REMOTE_ADDR"] == "2001:db8::7" and env["REMOTE_PORT"] == "4711"
        assert env["wsgi.url_scheme"] == "http" and env["SERVER_PORT"] == "8000"
        # The untrusted peer gets the root path (it is configuration) but not its headers.
    with running_server(fronted(app, proxy_headers=True), host="0.0.0.0") as server:
        env = json.loads(get(server.port, "/x", SPOOF, source=UNTRUSTED)[1])
        assert env["REMOTE_ADDR"] == UNTRUSTED and env["wsgi.url_scheme"] == "http"
        assert env["HTTP_HOST"] == "origin.test:8000" and env["SCRIPT_NAME"] == ""


def test_root_path_with_a_mount_and_the_app():
    app = echo_app()
    app.mount_wsgi("/legacy", environ_app)
    with running_server(fronted(app, root_path="/api")) as server:
        env = json.loads(get(server.port, "/legacy/a", [("X-Forwarded-For", "203.0.113.7")])[1])
        assert env["SCRIPT_NAME"] == "/api/legacy" and env["PATH_INFO"] == "/a"
        assert env["REMOTE_ADDR"] == LOOPBACK  # --root-path alone trusts no proxy header
        assert json.loads(get(server.port, "/who")[1])["root_path"] == "/api"


def test_access_log_shows_the_forwarded_client(caplog):
    app = fronted(echo_app(), proxy_headers=True, access_log=True)
    with caplog.at_level("INFO", logger="fastloop.access"):
        with running_server(app) as server:
            get(server.port, "/who", SPOOF)
            get(server.port, "/missing", SPOOF)
    lines = [r.getMessage() for r in caplog.records if r.name == "fastloop.access"]
    assert len(lines) == 2 and all(line.startswith("203.0.113.7 ") for line in lines), lines


@pytest.mark.parametrize("allow,believed", [("127.0.0.1", False), ("unix:", True), ("*", True)])
def test_unix_socket_peer(tmp_path, allow, believed):
    path = str(tmp_path / "app.sock")
    app = fronted(echo_app(), proxy_headers=True, forwarded_allow_ips=allow)
    with running_server(app, uds=path):
        seen = json.loads(get(0, "/who", SPOOF, uds=path)[1])
    if believed:
        assert seen["client"] == ["203.0.113.7", 0] and seen["scheme"] == "https"
    else:
        assert seen["client"] == "" and seen["scheme"] == "http"
    assert not os.path.exists(path)


def test_config_flags_and_env(monkeypatch):
    from fastloop.serve import parse_config

    _, config = parse_config(["m:app", "--proxy-headers", "--forwarded-allow-ips",
                              "10.0.0.0/8,unix:", "--root-path", "/api/"], environ={})
    assert config.proxy_headers and config.forwarded_allow_ips == "10.0.0.0/8,unix:"
    assert config.root_path == "/api"
    _, config = parse_config(["m:app"], environ={"FASTLOOP_PROXY_HEADERS": "1",
                                                 "FASTLOOP_FORWARDED_ALLOW_IPS": "*"})
    assert config.proxy_headers and config.forwarded_allow_ips == "*"
    for bad in ({"forwarded_allow_ips": "localhost"}, {"root_path": "api"}):
        with pytest.raises(ValueError):
            Config.from_env({}, **bad)
