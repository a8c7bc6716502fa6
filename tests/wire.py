"""A strict reader of HTTP/1.1 answers, for checking what fastloop puts on the wire.

It is stricter than any client: one status line, token field names, no control characters
in values, at most one Content-Length, never Content-Length beside Transfer-Encoding,
"chunked" as the only coding, and a body framed exactly as announced. A response that breaks
any of that raises Malformed (Truncated when the connection closed before its end: an answer
cut on purpose); read_answer() returns None while an answer is incomplete.
"""

from __future__ import annotations

import re
import socket
import time
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["Answer", "Malformed", "Truncated", "read_answer", "read_answers", "exchange", "NEXT"]

NEXT = b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"

_STATUS = re.compile(rb"HTTP/1\.1 ([1-9][0-9]{2}) ([\t -~\x80-\xff]*)\Z")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t -~\x80-\xff]*?)[ \t]*\Z")
_HEX = re.compile(rb"([0-9A-Fa-f]+)(;[\t -~]*)?\Z")


class Malformed(Exception):
    """The bytes are not one well-framed HTTP/1.1 answer."""


class Truncated(Malformed):
    """The connection closed before the answer was complete: an answer cut on purpose."""


class Answer(NamedTuple):
    status: int
    reason: bytes
    headers: List[Tuple[str, bytes]]   # names lower-cased, in order
    body: bytes
    close_delimited: bool              # the body ran to the end of the connection

    def header(self, name: str) -> Optional[bytes]:
        values = [v for n, v in self.headers if n == name]
        return values[0] if values else None

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.headers if n == name)


def read_answer(data: bytes, head_request: bool = False,
                eof: bool = False) -> Optional[Tuple[Answer, bytes]]:
    """(the first answer in data, the bytes after it), or None while incomplete. eof: the
    connection is closed after data (a close-delimited body ends there)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if eof and data:
            raise Truncated(f"connection closed inside a head: {data[:200]!r}")
        return None
    lines = data[:end].split(b"\r\n")
    m = _STATUS.match(lines[0])
    if not m:
        raise Malformed(f"bad status line {lines[0]!r}")
    status = int(m.group(1))
    headers = []
    for line in lines[1:]:
        f = _FIELD.match(line)
        if not f:
            raise Malformed(f"bad header line {line!r}")
        headers.append((f.group(1).decode().lower(), f.group(2)))
    rest = data[end + 4:]
    names = [n for n, _ in headers]
    if names.count("content-length") > 1 or names.count("transfer-encoding") > 1:
        raise Malformed("framing header repeated")
    if "content-length" in names and "transfer-encoding" in names:
        raise Malformed("Content-Length beside Transfer-Encoding")
    answer = Answer(status, m.group(2), headers, b"", False)
    if status < 200:
        raise Malformed(f"an interim {status} answer")
    if head_request or status in (204, 304):
        return answer, rest
    te = answer.header("transfer-encoding")
    if te is not None:
        if te != b"chunked":
            raise Malformed(f"Transfer-Encoding {te!r}")
        return _read_chunked(answer, rest, eof)
    cl = answer.header("content-length")
    if cl is not None:
        if not cl.isdigit():
            raise Malformed(f"Content-Length {cl!r}")
        n = int(cl)
        if len(rest) < n:
            if eof:
                raise Truncated(f"connection closed {n - len(rest)} bytes short of the body")
            return None
        return answer._replace(body=rest[:n]), rest[n:]
    if not eof:
        return None
    return answer._replace(body=rest, close_delimited=True), b""


def _read_chunked(answer: Answer, data: bytes, eof: bool) -> Optional[Tuple[Answer, bytes]]:
    body = []
    pos = 0
    while True:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            break
        m = _HEX.match(data[pos:nl])
        if not m:
            raise Malformed(f"bad chunk line {data[pos:nl][:80]!r}")
        size = int(m.group(1), 16)
        pos = nl + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                break
            return answer._replace(body=b"".join(body)), data[end + 4:]
        if len(data) < pos + size + 2:
            break
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise Malformed("chunk data not followed by CRLF")
        body.append(data[pos:pos + size])
        pos += size + 2
    if eof:
        raise Truncated("connection closed inside a chunked body")
    return None


def read_answers(data: bytes, eof: bool = True) -> Tuple[List[Answer], bytes]:
    """Every complete answer in data, and what is left after them."""
    out = []
    while data:
        got = read_answer(data, eof=eof)
        if got is None:
            break
        answer, data = got
        out.append(answer)
        if answer.close_delimited:
            break
    return out, data


def exchange(port: int, request: bytes, head: bool = False, timeout: float = 5.0) -> Tuple[bytes, bool]:
    """Sends request, then GET /next, on one connection to 127.0.0.1:port. Returns (every byte
    read, whether the server closed) once both answers are in, the server closed, or what came
    is malformed already (the caller's read_answer says how); raises after timeout seconds."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request + NEXT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(262144)
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
            try:
                got = read_answer(data, head_request=head)
                nxt = read_answer(got[1]) if got is not None else None
            except Malformed:
                return data, False
            if nxt is not None and not nxt[1]:
                return data, False
    raise AssertionError(f"no answer, no close within {timeout}s: {data[:300]!r}")
