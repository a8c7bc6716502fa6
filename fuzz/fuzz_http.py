"""Fuzzes fastloop's request-head parser and chunked decoder with atheris (libFuzzer).

    python fuzz/fuzz_http.py -max_total_time=600 -artifact_prefix=/tmp/ /tmp/corpus fuzz/corpus
    python fuzz/fuzz_http.py -runs=50000 /tmp/corpus fuzz/corpus    # about what tests/test_fuzz.py runs

libFuzzer writes new inputs into the first corpus directory (give it a scratch one unless you
mean to grow fuzz/corpus) and a failing input to <artifact_prefix>crash-<sha1> (default: the
current directory). Built with FASTLOOP_SANITIZE=address,undefined (docs/reliability.md),
an out-of-bounds read or undefined behaviour in the C aborts the run with a report; a failed
check below raises, and atheris saves the input as crash-<sha1>.

An input is two control bytes and a payload. The first picks the target and the limits, the
second seeds how the payload is cut into pieces for the incremental APIs:
  byte 0 & 3: 0 head parser, 1 head parser after a valid request line, 2 chunked decoder,
              3 chunked decoder after a valid chunk;   byte 0 & 4: tight limits.
Only this module's functions are instrumented (@atheris.instrument_func): with gcc the C has no
coverage, and these Python branches are the signal (see outcome()).

The checks are properties, not a second parser: results are of the documented kinds, a parsed
head is consistent with the bytes, and how the stream is cut never changes the outcome
(see same_outcome()).
"""

from __future__ import annotations

import random
import sys

import atheris

from fastloop._core import DEFAULT_LIMITS, ChunkedDecoder, HeadParser, parse_head

HEAD_STATUSES = {400, 413, 414, 431, 501, 505}
CHUNKED_STATUSES = {400, 413, 431}
# Tight limits let short inputs reach every limit check.
TIGHT_LIMITS = {"request_line": 64, "header_bytes": 256, "field_size": 64, "fields": 4, "body_bytes": 100}
TIGHT_BODY = 100
HEAD_PREFIX = b"GET /p?q HTTP/1.1\r\nHost: h\r\n"
CHUNK_PREFIX = b"5\r\nhello\r\n"


@atheris.instrument_func
def pieces(data: bytes, seed: int) -> list:
    """data cut at up to 8 places chosen by seed (0: whole)."""
    if not seed or len(data) < 2:
        return [data]
    rng = random.Random(seed)
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randrange(1, 9))})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


@atheris.instrument_func
def same_outcome(whole, split) -> bool:
    """Whole and in pieces, a stream parses to the same result. Only the status of a rejection
    may differ: a request line both too long and malformed is 414 while it is still arriving
    and 400 once whole, and either answer is right."""
    if isinstance(whole, int) and isinstance(split, int):
        return True
    return whole == split


@atheris.instrument_func
def feed_until_done(feeder, parts: list):
    """Feeds parts in order until one returns a result; returns it (None if none did)."""
    for part in parts:
        result = feeder.feed(part)
        if result is not None:
            return result
    return None


@atheris.instrument_func
def check_head(data: bytes, seed: int, limits: dict) -> None:
    whole = parse_head(data, limits)
    if isinstance(whole, int):
        assert whole in HEAD_STATUSES, whole
    elif whole is not None:
        n = whole["head_len"]
        assert 0 < n <= len(data) and data[:n].endswith(b"\r\n\r\n"), whole
        line = f"{whole['method']} {whole['target']} HTTP/{whole['version'][0]}.{whole['version'][1]}\r\n"
        assert data.startswith(line.encode("latin-1")), (line, data[:80])
        assert len(whole["headers"]) <= limits["fields"]
        cl = whole["content_length"]
        assert cl is None or 0 <= cl <= limits["body_bytes"]
        for name, value in whole["headers"]:
            assert name and ":" not in name and value == value.strip(" \t")
            assert f"{name}:".encode("latin-1") in data[:n]
    split = feed_until_done(HeadParser(limits), pieces(data, seed))
    assert same_outcome(whole, split), (whole, split)
    outcome(whole)


@atheris.instrument_func
def check_chunked(data: bytes, seed: int, max_body: int) -> None:
    whole = ChunkedDecoder(max_body).feed(data)
    if isinstance(whole, int):
        assert whole in CHUNKED_STATUSES, whole
    elif whole is not None:
        body, consumed = whole
        assert len(body) <= consumed <= len(data) and len(body) <= max_body, (len(body), consumed)
        assert data[:consumed].endswith(b"\r\n")
        again = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
        assert ChunkedDecoder(max_body).feed(again) == (body, len(again))
    split = feed_until_done(ChunkedDecoder(max_body), pieces(data, seed))
    assert same_outcome(whole, split), (whole, split)
    outcome(whole)


@atheris.instrument_func
def outcome(result) -> None:
    """Branches on what a result was: the C core is not instrumented (gcc has no libFuzzer
    coverage), so these Python branches are the coverage signal that keeps inputs with new
    outcomes (every status, head shapes, body sizes) in the corpus."""
    if result is None:
        return
    if isinstance(result, int):
        for status in (400, 413, 414, 431, 501, 505):
            if result == status:
                return
        return
    if isinstance(result, tuple):
        size = len(result[0])
        for bound in (0, 1, 16, 256, 4096):
            if size <= bound:
                return
        return
    for m in ("GET", "HEAD", "POST", "OPTIONS", "CONNECT"):
        if result["method"] == m:
            break
    if result["query"]:
        pass
    if result["version"] == (1, 0):
        pass
    if result["keep_alive"]:
        pass
    if result["content_length"] is not None:
        pass
    for name, _ in result["headers"]:
        lower = name.lower()
        for known in ("host", "content-length", "transfer-encoding", "connection", "expect"):
            if lower == known:
                break


@atheris.instrument_func
def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, seed, payload = data[0], data[1], data[2:]
    tight = bool(mode & 4)
    limits = TIGHT_LIMITS if tight else DEFAULT_LIMITS
    target = mode & 3
    if target == 0:
        check_head(payload, seed, limits)
    elif target == 1:
        check_head(HEAD_PREFIX + payload, seed, limits)
    else:
        max_body = TIGHT_BODY if tight else DEFAULT_LIMITS["body_bytes"]
        check_chunked((CHUNK_PREFIX if target == 3 else b"") + payload, seed, max_body)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
