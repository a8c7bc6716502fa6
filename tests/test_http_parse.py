"""The request-head parser, one line per named case (picohttpparser's test.c style).

Every case is fed whole, one byte at a time and in random splits through the same incremental
framing a connection uses; all three must agree. An expectation is a status (the request is
rejected with it), or a dict of fields the parsed head must have.
"""

import random

import pytest
from fastloop._core import DEFAULT_LIMITS, HeadParser, parse_head

H = b"Host: x\r\n"

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
]


def check(result, expected):
    if isinstance(expected, dict):
        assert isinstance(result, dict), result
        for key, value in expected.items():
            assert result[key] == value, (key, result)
    else:
        assert result == expected


def feed_all(data, pieces):
    parser = HeadParser()
    results = [parser.feed(p) for p in pieces]
    # Nothing is reported before the end, except a rejection that may come early.
    for early in results[:-1]:
        assert early is None or isinstance(early, int)
    return results[-1] if not any(isinstance(r, int) for r in results[:-1]) else \
        next(r for r in results if isinstance(r, int))


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_whole(name, data, expected):
    check(parse_head(data), expected)


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_byte_by_byte(name, data, expected):
    check(feed_all(data, [data[i:i + 1] for i in range(len(data))]), expected)


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_random_splits(name, data, expected):
    rng = random.Random(name)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        check(feed_all(data, pieces), expected)


def test_head_len_excludes_what_follows():
    req = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
    result = parse_head(req + b"GET /next HTTP/1.1\r\n")
    assert result["head_len"] == len(req)


def test_limits_are_configurable():
    req = b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\n\r\n"
    assert parse_head(req, {"fields": 2}) == 431
    assert parse_head(req, {"fields": 3})["headers"][2] == ("B", "2")
