"""core/scan.h through thin views: the end-of-head scan (fl_find_head_end's contract in
core/http.pyx) and the hex parser for chunk sizes. One line per named case."""

from __future__ import annotations

import pytest

from fastloop._bench import SCAN_BARE_LF, SCAN_OVERFLOW, scan_head_end, scan_hex

HEAD_CASES = [
    # name, input, expected
    ("complete", b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25),
    ("with body after", b"GET / HTTP/1.1\r\n\r\nbody", 18),
    ("incomplete", b"HTTP/1.1 200 OK\r\nA: b\r\n", 0),
    ("incomplete 3", b"HTTP/1.1 200 OK\r\n\r", 0),
    ("empty", b"", 0),
    ("only crlf crlf", b"\r\n\r\n", 4),
    ("bare lf twice", b"HTTP/1.1 200 OK\n\n", SCAN_BARE_LF),
    ("lf then crlf", b"HTTP/1.1 200 OK\r\n\n", SCAN_BARE_LF),
    ("first of two heads", b"A\r\n\r\nB\r\n\r\n", 5),
]


@pytest.mark.parametrize("name,data,expected", HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_scan_head_end(name, data, expected):
    assert scan_head_end(data) == expected
    assert SCAN_BARE_LF == -400


@pytest.mark.parametrize("name,data,expected", HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_scan_head_end_resumes_byte_by_byte(name, data, expected):
    # Each prefix is scanned from where the previous call stopped, as a parser does between
    # reads: the answer is the same as for the whole input.
    scanned = 0
    for n in range(1, len(data) + 1):
        got = scan_head_end(data[:n], scanned)
        if got != 0:
            assert got == expected
            return
        scanned = n
    assert expected == 0


def test_scan_head_end_finds_a_terminator_straddling_the_resume_point():
    data = b"HTTP/1.1 200 OK\r\n\r\n"
    for split in range(len(data) - 4, len(data)):
        assert scan_head_end(data, split) == len(data)


HEX_CASES = [
    ("one digit", b"a", (1, 10)),
    ("upper and lower", b"fF", (2, 255)),
    ("stops at extension", b"1A;name=v", (2, 26)),
    ("stops at cr", b"10\r\n", (2, 16)),
    ("no digit", b";x", (0, 0)),
    ("empty", b"", (0, 0)),
    ("not hex", b"g1", (0, 0)),
    ("many leading zeros", b"0" * 40 + b"1f", (42, 31)),
    ("zero", b"0000", (4, 0)),
    ("over 4 GiB", b"100000003", (9, 2**32 + 3)),
    ("int64 max", b"7fffffffffffffff", (16, 2**63 - 1)),
    ("int64 max with zeros", b"007fffffffffffffff", (18, 2**63 - 1)),
]


@pytest.mark.parametrize("name,data,expected", HEX_CASES, ids=[c[0] for c in HEX_CASES])
def test_scan_hex(name, data, expected):
    assert scan_hex(data) == expected


@pytest.mark.parametrize("data", [b"8000000000000000", b"ffffffffffffffff", b"10000000000000000",
                                  b"1" * 40], ids=["int64 max + 1", "uint64 max", "2^64", "40 digits"])
def test_scan_hex_rejects_overflow(data):
    assert scan_hex(data)[0] == SCAN_OVERFLOW
