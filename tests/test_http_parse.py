"""The request-head parser, one line per named case (picohttpparser's test.c style).

Every case is fed whole, one byte at a time and in random splits through the same incremental
framing a connection uses; all three must agree. An expectation is a status (the request is
rejected with it), or a dict of fields the parsed head must have.
"""

import random

import pytest
from fastloop._core import DEFAULT_LIMITS, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADERS, HeadParser, parse_head

H = b"Host: x\r\n"


def host(value):
    return b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n"


def target(value, headers=H):
    return b"GET " + value + b" HTTP/1.1\r\n" + headers + b"\r\n"


def post(header):
    return b"POST / HTTP/1.1\r\n" + H + header + b"\r\n\r\n"


TLS_HELLO = bytes.fromhex("16030100f4010000f00303") + bytes(range(32)) + b"\r\n\r\n"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

CASES = [
    # name, input, expected
    ("simple", b"GET / HTTP/1.1\r\n" + H + b"\r\n", {"method": "GET", "path": "/", "version": (1, 1)}),
    ("query", b"GET /a/b?c=d&e HTTP/1.1\r\n" + H + b"\r\n", {"path": "/a/b", "query": "c=d&e"}),
    ("http/1.0 no host", b"GET / HTTP/1.0\r\n\r\n", {"version": (1, 0), "keep_alive": False}),
    ("http/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", {"keep_alive": True}),
    ("http/1.1 close", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", {"keep_alive": False}),
    ("connection list", b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade, CLOSE\r\n\r\n",
     {"keep_alive": False}),
    ("http/1.2 is 1.x", b"GET / HTTP/1.2\r\n" + H + b"\r\n", {"version": (1, 2)}),
    ("header ows trimmed", b"GET / HTTP/1.1\r\n" + H + b"X-A: \t v w \t\r\n\r\n",
     {"headers": [("Host", "x"), ("X-A", "v w")]}),
    ("empty header value", b"GET / HTTP/1.1\r\n" + H + b"X-E:\r\n\r\n",
     {"headers": [("Host", "x"), ("X-E", "")]}),
    ("obs-text in value", b"GET / HTTP/1.1\r\n" + H + b"X: caf\xe9\r\n\r\n",
     {"headers": [("Host", "x"), ("X", "caf\xe9")]}),
    ("content-length", b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n", {"content_length": 5}),
    ("same content-length twice",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", {"content_length": 5}),
    ("unknown method", b"BREW /pot HTTP/1.1\r\n" + H + b"\r\n", {"method": "BREW"}),
    ("absolute-form", b"GET http://example.com/x?y HTTP/1.1\r\n" + H + b"\r\n", {"path": "/x", "query": "y"}),
    ("absolute-form no path", b"GET http://example.com HTTP/1.1\r\n" + H + b"\r\n", {"path": ""}),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", {"path": "*"}),
    ("authority-form", b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n", {"path": "example.com:443"}),
    ("incomplete", b"GET / HTTP/1.1\r\n" + H, None),
    ("incomplete request line", b"GET / HTT", None),
    # rejected: 400
    ("lowercase version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("no version", b"GET /\r\n" + H + b"\r\n", 400),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\n" + H + b"X : y\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n" + H + b": y\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("bare LF line", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("bare LF head end", b"GET / HTTP/1.1\r\nHost: x\n\n", 400),
    ("bare CR in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("DEL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("control in target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("no host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("bad content-length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\n", 400),
    ("negative content-length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("conflicting content-length",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    ("content-length overflow",  # parsed without overflow: beyond any body limit
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999\r\n\r\n", 413),
    ("content-length and chunked",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("asterisk with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("relative target", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method with slash", b"GE/T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    # other statuses
    ("http/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http/0.9 style major", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("unknown coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    ("chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n\r\n", {"content_length": None}),
    ("chunked twice",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ("chunked in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("body too large",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % (DEFAULT_LIMITS["body_bytes"] + 1), 413),
    ("request line too long",
     b"GET /" + b"a" * DEFAULT_LIMITS["request_line"] + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("request line too long, incomplete", b"GET /" + b"a" * (DEFAULT_LIMITS["request_line"] + 10), 414),
    ("header too long",
     b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * DEFAULT_LIMITS["field_size"] + b"\r\n\r\n", 431),
    ("too many headers",
     b"GET / HTTP/1.1\r\n" + H
     + b"".join(b"X%d: v\r\n" % i for i in range(DEFAULT_LIMITS["fields"])) + b"\r\n", 431),
    ("head too large, incomplete",
     b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * (DEFAULT_LIMITS["header_bytes"] // 6 + 1), 431),

    # Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 9112 3.2): anything else is 400
    ("host with port", host(b"example.com:8080"), {"authority": None}),
    ("host ipv4", host(b"127.0.0.1:80"), {}),
    ("host ipv6", host(b"[2001:db8::1]:8080"), {}),
    ("host ipv6 loopback", host(b"[::1]"), {}),
    ("host ipv6 full", host(b"[1:2:3:4:5:6:7:8]"), {}),
    ("host ipv6 ipv4 tail", host(b"[::ffff:192.0.2.1]"), {}),
    ("host ipvfuture", host(b"[v1.fe:x]"), {}),
    ("host empty", host(b""), {}),  # an empty reg-name is valid (RFC 9110 7.2)
    ("host sub-delims and escape", host(b"a-b_c~d!$&'()*+,;=%41"), {}),
    ("host port 65535", host(b"x:65535"), {}),
    ("host port leading zeros", host(b"x:000080"), {}),
    ("host empty port", host(b"x:"), {}),  # port = *DIGIT
    ("host with space", host(b"a b"), 400),
    ("host with path", host(b"x/y"), 400),
    ("host userinfo", host(b"user@x"), 400),
    ("host non-numeric port", host(b"x:8a"), 400),
    ("host port 65536", host(b"x:65536"), 400),
    ("host port 2^32+80", host(b"x:4294967376"), 400),
    ("host two ports", host(b"x:80:80"), 400),
    ("host bad escape", host(b"x%4"), 400),
    ("host obs-text", host(b"caf\xe9"), 400),
    ("host ipv6 unclosed", host(b"[::1"), 400),
    ("host ipv6 nine groups", host(b"[1:2:3:4:5:6:7:8:9]"), 400),
    ("host ipv6 two elisions", host(b"[1::2::3]"), 400),
    ("host ipv6 triple colon", host(b"[:::1]"), 400),
    ("host ipv6 zone id", host(b"[fe80::1%25eth0]"), 400),
    ("host ipv4 in brackets", host(b"[1.2.3.4]"), 400),
    ("host ipv6 bad octet", host(b"[::256.1.1.1]"), 400),
    ("host in http/1.0 checked too", b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400),

    # absolute-form: the authority is validated and reported; it wins over Host (RFC 9112 3.2.2)
    ("origin-form has no authority", target(b"/x"), {"authority": None}),
    ("absolute-form authority", target(b"http://example.com/x?y", b"Host: other\r\n"),
     {"authority": "example.com", "path": "/x", "query": "y"}),
    ("absolute-form with port", target(b"http://a.example:8080"),
     {"authority": "a.example:8080", "path": ""}),
    ("absolute-form ipv6", target(b"http://[::1]:81/p"), {"authority": "[::1]:81", "path": "/p"}),
    ("absolute-form query at once", target(b"http://a?q"), {"authority": "a", "query": "q"}),
    ("absolute-form empty authority", target(b"http:///x"), 400),
    ("absolute-form bad ip literal", target(b"http://[bad/x"), 400),
    ("absolute-form bracket junk", target(b"s://]ufd/:"), 400),
    ("absolute-form userinfo", target(b"http://user:pw@a/"), 400),
    ("absolute-form bad port", target(b"http://a:99999/"), 400),
    ("connect without port", b"CONNECT example.com HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect ipv6", b"CONNECT [::1]:443 HTTP/1.1\r\n" + H + b"\r\n", {"path": "[::1]:443"}),

    # origin-form bytes (RFC 9112 3.2, RFC 3986 2, 3.3-3.5)
    ("target sub-delims, colon, at", target(b"/!$&'()*+,;=:@-._~"), {"path": "/!$&'()*+,;=:@-._~"}),
    ("target slash and question mark in query", target(b"/p?a=/b?c"), {"path": "/p", "query": "a=/b?c"}),
    ("target brackets in query", target(b"/p?a[]=1"), {"query": "a[]=1"}),
    ("target escapes", target(b"/a%2Fb%c3%A9"), {"path": "/a%2Fb%c3%A9"}),
    ("target fragment", target(b"/a#b"), 400),
    ("target fragment in query", target(b"/a?b#c"), 400),
    ('target "', target(b'/a"b'), 400),
    ("target |", target(b"/a|b"), 400),
    ("target backslash", target(b"/a\\b"), 400),
    ("target ^", target(b"/a^b"), 400),
    ("target `", target(b"/a`b"), 400),
    ("target {", target(b"/a{b"), 400),
    ("target }", target(b"/a}b"), 400),
    ("target <", target(b"/a<b"), 400),
    ("target >", target(b"/a>b"), 400),
    ("target raw utf-8", target(b"/caf\xc3\xa9"), 400),
    ("target raw byte in query", target(b"/p?q=\xff"), 400),
    ("target bad escape", target(b"/a%zz"), 400),
    ("target short escape", target(b"/a%2"), 400),
    ("target percent at end", target(b"/a%"), 400),
    ("absolute-form path checked too", target(b"http://a/b|c"), 400),

    # framing details (section 4 of issue 10)
    ("chunked with empty element after", post(b"Transfer-Encoding: chunked,"), {"chunked": True}),
    ("chunked with empty element before", post(b"Transfer-Encoding: , chunked"), {"chunked": True}),
    ("chunked among empty elements", post(b"Transfer-Encoding: ,, chunked ,"), {"chunked": True}),
    ("transfer-encoding with no coding", post(b"Transfer-Encoding: ,"), 400),
    ("transfer-encoding empty", post(b"Transfer-Encoding:"), 400),
    ("chunked then gzip", post(b"Transfer-Encoding: chunked, gzip"), 501),
    ("chunked twice in one list", post(b"Transfer-Encoding: chunked, chunked"), 501),
    ("content-length 50 leading zeros", post(b"Content-Length: " + b"0" * 50 + b"5"), {"content_length": 5}),
    ("content-length all zeros", post(b"Content-Length: " + b"0" * 50), {"content_length": 0}),
    ("content-length 2^64-1", post(b"Content-Length: %d" % (2**64 - 1)), 413),
    ("content-length 2^64+10", post(b"Content-Length: %d" % (2**64 + 10)), 413),  # not 10
    ("request line of 8000", target(b"/" + b"a" * (8000 - 14)), {"method": "GET"}),
    ("target of 7900", target(b"/" + b"a" * 7899), {"method": "GET"}),
    ("100 fields plus host",
     b"GET / HTTP/1.1\r\n" + H + b"".join(b"X%d: v\r\n" % i for i in range(100)) + b"\r\n",
     {"method": "GET"}),
    ("tls client hello", TLS_HELLO, 400),
    ("tls client hello, first bytes", TLS_HELLO[:6], 400),
    ("binary first byte", b"\x00GET / HTTP/1.1\r\n", 400),
    ("http/2 preface", H2_PREFACE, 400),
    ("http/2 preface line", H2_PREFACE[:16], 400),
    ("lone CR waits", b"\r", None),
]


# Lengths from the wire at the 32-bit boundaries, against a body limit above 4 GiB (issue 10,
# section 1: they were cut to 32 bits), and other limit settings.
BIG = {"body_bytes": MAX_BODY_BYTES}
LIMIT_CASES = [
    # name, limits, input, expected
    ("content-length 2^32-1", BIG, post(b"Content-Length: %d" % (2**32 - 1)), {"content_length": 2**32 - 1}),
    ("content-length 2^32", BIG, post(b"Content-Length: %d" % 2**32), {"content_length": 2**32}),
    ("content-length 2^32+1", BIG, post(b"Content-Length: %d" % (2**32 + 1)), {"content_length": 2**32 + 1}),
    ("content-length 2^32+10", BIG, post(b"Content-Length: 4294967306"), {"content_length": 4294967306}),
    ("content-length 2^64-1", BIG, post(b"Content-Length: %d" % (2**64 - 1)), 413),
    ("content-length at the maximum", BIG, post(b"Content-Length: %d" % MAX_BODY_BYTES),
     {"content_length": MAX_BODY_BYTES}),
    ("content-length past the maximum", BIG, post(b"Content-Length: %d" % (MAX_BODY_BYTES + 1)), 413),
    ("content-length at a 2^32 limit", {"body_bytes": 2**32}, post(b"Content-Length: %d" % 2**32),
     {"content_length": 2**32}),
    ("content-length past a 2^32 limit", {"body_bytes": 2**32},
     post(b"Content-Length: %d" % (2**32 + 1)), 413),
    ("raw utf-8 target, lenient", {"lenient_targets": True}, target(b"/caf\xc3\xa9?q=\xff"),
     {"path": "/caf\xc3\xa9", "query": "q=\xff"}),
    ("fragment, lenient", {"lenient_targets": True}, target(b"/a#b"), 400),
    ("bad escape, lenient", {"lenient_targets": True}, target(b"/a%zz"), 400),
    ("lenient targets leave Host strict", {"lenient_targets": True}, host(b"caf\xc3\xa9"), 400),
    ("the most fields", {"fields": MAX_HEADERS},
     b"GET / HTTP/1.1\r\n" + H + b"".join(b"X%d: v\r\n" % i for i in range(MAX_HEADERS - 1)) + b"\r\n",
     {"method": "GET"}),
    ("one field past the most", {"fields": MAX_HEADERS},
     b"GET / HTTP/1.1\r\n" + H + b"".join(b"X%d: v\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n", 431),
]


def check(result, expected):
    if isinstance(expected, dict):
        assert isinstance(result, dict), result
        for key, value in expected.items():
            assert result[key] == value, (key, result)
    else:
        assert result == expected


def feed_all(data, pieces, limits=None):
    parser = HeadParser(limits)
    results = [parser.feed(p) for p in pieces]
    # Nothing is reported before the end, except a rejection that may come early.
    for early in results[:-1]:
        assert early is None or isinstance(early, int)
    return results[-1] if not any(isinstance(r, int) for r in results[:-1]) else \
        next(r for r in results if isinstance(r, int))


ALL = [(name, None, data, expected) for name, data, expected in CASES] + LIMIT_CASES


@pytest.mark.parametrize("name,limits,data,expected", ALL, ids=[c[0] for c in ALL])
def test_whole(name, limits, data, expected):
    check(parse_head(data, limits), expected)


@pytest.mark.parametrize("name,limits,data,expected", ALL, ids=[c[0] for c in ALL])
def test_byte_by_byte(name, limits, data, expected):
    check(feed_all(data, [data[i:i + 1] for i in range(len(data))], limits), expected)


@pytest.mark.parametrize("name,limits,data,expected", ALL, ids=[c[0] for c in ALL])
def test_random_splits(name, limits, data, expected):
    rng = random.Random(name)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        check(feed_all(data, pieces, limits), expected)


def test_head_len_excludes_what_follows():
    req = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
    result = parse_head(req + b"GET /next HTTP/1.1\r\n")
    assert result["head_len"] == len(req)


def test_limits_are_configurable():
    req = b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\n\r\n"
    assert parse_head(req, {"fields": 2}) == 431
    assert parse_head(req, {"fields": 3})["headers"][2] == ("B", "2")


def test_default_limits_follow_rfc_9112():
    assert DEFAULT_LIMITS["request_line"] >= 8000  # RFC 9112 3
    assert DEFAULT_LIMITS["fields"] >= 101  # 100 fields plus Host
    assert DEFAULT_LIMITS["lenient_targets"] is False


BOUNDARIES = [2**32 - 1, 2**32, 2**32 + 1, 2**64 - 1]


@pytest.mark.parametrize("name,top", [("request_line", MAX_HEAD_BYTES), ("header_bytes", MAX_HEAD_BYTES),
                                      ("field_size", MAX_HEAD_BYTES), ("fields", MAX_HEADERS),
                                      ("body_bytes", MAX_BODY_BYTES)])
def test_every_limit_has_a_maximum_below_any_overflow(name, top):
    # A limit past its maximum would have been cut to 32 bits (0 or 1 at 2^32, 2^32+1) or
    # refused with an OverflowError: it is a ValueError that names it.
    assert isinstance(parse_head(b"GET / HTTP/1.1\r\n" + H + b"\r\n", {name: top}), dict)
    for value in [top + 1, -1] + [v for v in BOUNDARIES if v > top]:
        with pytest.raises(ValueError, match=name):
            parse_head(b"GET / HTTP/1.1\r\n", {name: value})
    with pytest.raises(ValueError, match=name):
        parse_head(b"GET / HTTP/1.1\r\n", {name: "100"})


@pytest.mark.parametrize("body", BOUNDARIES[:3])
def test_body_limits_at_the_32_bit_boundaries_hold_exactly(body):
    lim = {"body_bytes": body}
    assert parse_head(post(b"Content-Length: %d" % body), lim)["content_length"] == body
    assert parse_head(post(b"Content-Length: %d" % (body + 1)), lim) == 413
