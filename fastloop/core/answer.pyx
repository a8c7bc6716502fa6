# What a handler's result means on the wire, decided in full before one byte is written.
#
# Theory of operation. plan_answer() turns whatever a handler returned (bytes, str, dict/list,
# a Response) into an Answer: the status line, the header fields, the framing and how the body
# goes out. It validates everything first and raises ValueError / TypeError for an answer that
# cannot be sent, so the caller can answer 500 instead, on a connection that saw nothing of the
# bad one. Framing is the server's, never the handler's (RFC 9112 6): the core writes
# Content-Length or Transfer-Encoding and Connection itself, from the body and the request.
# Of a handler's own header fields:
#   Content-Length     is the length to announce (as Response(content_length=...)), once valid
#                      (digits only; two different values, or a different content_length, raise);
#   Transfer-Encoding  is dropped: the core chunks a body of unknown length itself;
#   Connection         is dropped, but a "close" token in it closes the connection after this
#                      answer (the core then writes "Connection: close");
#   Keep-Alive         is dropped (hop-by-hop, RFC 9110 7.6.1);
#   Date, Server       replace the core's own, so that there is never two of either.
# A field name must be a token and a value may hold no control character but HTAB (CR, LF and
# NUL would let a value forge header lines or cut the head short).

import re as _re
from http import HTTPStatus as _HTTPStatus
from json import dumps as _json_dumps
import os as _os

from libc.stdint cimport int64_t


cdef bytes status_line(int status):
    try:
        phrase = _HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


cdef dict STATUS_LINES = {s.value: status_line(s.value) for s in _HTTPStatus}

cdef object _TOKEN = _re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
cdef object _BAD_VALUE = _re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")   # CTLs but HTAB
cdef object _DIGITS = _re.compile(r"[0-9]+\Z")
cdef object _CLOSE_TOKEN = _re.compile(r"(?:^|,)[ \t]*close[ \t]*(?:,|$)", _re.IGNORECASE)

cdef bytes OCTETS = b"application/octet-stream"
cdef bytes TEXT = b"text/plain; charset=utf-8"
cdef bytes JSON = b"application/json"

# How a body goes out
cdef enum:
    BODY_BYTES = 0
    BODY_FILE = 1
    BODY_ITER = 2


cdef class Response:
    """An answer: a status, headers and a body, with its content type.

    body: bytes-like; str (sent as UTF-8, text/plain by default); a dict or list (sent as JSON,
    application/json); a binary file object (sent with sendfile from its current position); or
    any other iterable of bytes/str pieces, streamed as they come (chunked, or as is when
    content_length is given). A handler may also return bytes, str, a dict or a list directly.
    content_type: None for the body's default, "" for no Content-Type header.
    headers: a mapping or (name, value) pairs; framing fields are the server's (see above).
    reason: the status line's phrase, if not the standard one.
    content_length: the length to announce when it is known but not the body's own, e.g. for
    an iterable, or for HEAD answers whose body is left out."""

    cdef public object body
    cdef public int status
    cdef public object headers
    cdef public str content_type
    cdef public str reason
    cdef public object content_length

    def __init__(self, body=b"", int status=200, headers=None, content_type=None, reason=None,
                 content_length=None):
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.reason = reason
        self.content_length = content_length


cdef class Answer:
    """A handler's result, checked and laid out: what response.pyx copies to the wire."""
    cdef bytes status_line
    cdef bytes ctype           # the Content-Type value, or b"" for none
    cdef bytes fields          # the handler's own header lines, checked
    cdef bint own_server       # the handler gave Server: the core writes none
    cdef bint own_date         # ... and Date
    cdef bint close            # the connection closes after this answer
    cdef int kind              # BODY_*
    cdef object body           # bytes, a binary file object, or an iterable of pieces
    cdef bint send_body        # False for HEAD, 1xx, 204 and 304 answers
    cdef bint chunked
    cdef object length         # the announced length (int), or None
    cdef int64_t file_off      # BODY_FILE: where sending starts
    cdef int64_t file_len      # ... and how many bytes the file holds from there (<= length)


# Content type -> its encoded header value, for the few an app uses. Shared by every handler
# thread: setdefault, so that a value once cached is never replaced while another thread may be
# reading it (each dict operation is atomic on a free-threaded CPython; a get-then-set pair is
# not). The 256 cap is checked racily and may be passed by a few entries: harmless.
cdef dict CTYPES = {}


cdef bytes content_type_bytes(str content_type):
    cdef bytes value = CTYPES.get(content_type)
    if value is None:
        if _BAD_VALUE.search(content_type):
            raise ValueError(f"invalid content type {content_type!r}")  # header injection
        value = content_type.encode("latin-1")
        if len(CTYPES) < 256:
            value = CTYPES.setdefault(content_type, value)
    return value


cdef bytes header_line(object name, object value):
    """"name: value\\r\\n", or ValueError when either could break the head."""
    if type(name) is not str or not _TOKEN.match(name):
        raise ValueError(f"invalid response header name {name!r}")
    text = value if type(value) is str else str(value)
    if _BAD_VALUE.search(text):
        raise ValueError(f"invalid value for response header {name!r}: {text!r}")  # injection
    return f"{name}: {text}\r\n".encode("latin-1")


cdef bytes encode_headers(headers):
    """Header lines for fields a static route fixes; framing fields are refused there."""
    if not headers:
        return b""
    if hasattr(headers, "items"):
        headers = headers.items()
    parts = []
    for name, value in headers:
        if type(name) is str and name.lower() in ("content-length", "transfer-encoding", "connection"):
            raise ValueError(f"the core writes {name} itself")
        parts.append(header_line(name, value))
    return b"".join(parts)


cdef int64_t declared_length(object value) except -2:
    """Response(content_length=...): an int >= 0 (not a bool, not a str), else raises."""
    if type(value) is not int:
        raise TypeError(f"content_length is an int, not {type(value).__name__}")
    if value < 0 or value > 0x7fffffffffffffff:
        raise ValueError(f"invalid content_length {value}")
    return value


cdef int64_t field_length(str text) except -2:
    """A Content-Length field's value: digits only (RFC 9110 8.6), else raises."""
    text = text.strip(" \t")
    if not _DIGITS.match(text) or len(text) > 18:
        raise ValueError(f"invalid Content-Length field {text!r}")
    return int(text)


cdef void take_fields(Answer a, headers) except *:
    """The handler's own header fields into a.fields, applying the rules at the top."""
    if hasattr(headers, "items"):
        headers = headers.items()
    parts = []
    cdef object length = None
    for name, value in headers:
        line = header_line(name, value)
        lower = (<str>name).lower()
        if lower == "content-length":
            n = field_length(value if type(value) is str else str(value))
            if length is not None and n != length:
                raise ValueError("two different Content-Length fields")
            length = n
        elif lower == "connection":
            if _CLOSE_TOKEN.search(value if type(value) is str else str(value)):
                a.close = True
        elif lower == "transfer-encoding" or lower == "keep-alive":
            pass
        else:
            if lower == "server":
                a.own_server = True
            elif lower == "date":
                a.own_date = True
            parts.append(line)
    if length is not None:
        if a.length is not None and a.length != length:
            raise ValueError(f"content_length {a.length} but a Content-Length field of {length}")
        a.length = length
    a.fields = b"".join(parts)


cdef tuple body_of(object body):
    """(kind, bytes or the object, default content type) for a body."""
    if isinstance(body, bytes):
        return BODY_BYTES, body, OCTETS
    if isinstance(body, str):
        return BODY_BYTES, (<str>body).encode("utf-8"), TEXT
    if isinstance(body, (dict, list)):
        return BODY_BYTES, _json_dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), JSON
    if isinstance(body, (bytearray, memoryview)):
        return BODY_BYTES, bytes(body), OCTETS
    if body is None:
        return BODY_BYTES, b"", OCTETS
    if hasattr(body, "fileno") and hasattr(body, "seek"):
        return BODY_FILE, body, OCTETS
    if hasattr(body, "__iter__"):
        return BODY_ITER, body, OCTETS
    raise TypeError(f"cannot send a body of type {type(body).__name__}")


cdef bytes piece_bytes(object piece):
    """One piece of an iterable body as bytes: bytes-like, or str (sent as UTF-8)."""
    if type(piece) is bytes:
        return <bytes>piece
    if isinstance(piece, str):
        return (<str>piece).encode("utf-8")
    if isinstance(piece, (bytes, bytearray, memoryview)):
        return bytes(piece)
    raise TypeError(f"an iterable body yields bytes or str, not {type(piece).__name__}")


cdef Answer plan_answer(object result, int req_flags):
    """The Answer for a handler's result to a request with FL_REQ_* req_flags. Raises
    ValueError or TypeError, before anything is written, for an answer that cannot be sent."""
    cdef Answer a = Answer.__new__(Answer)
    cdef int status = 200
    cdef bytes ctype
    cdef Response r
    a.fields = b""
    if isinstance(result, Response):
        r = <Response>result
        status = r.status
        if r.content_length is not None:
            a.length = declared_length(r.content_length)
        if type(r.body) is bytes:  # the common case, without the general dispatch
            a.kind = BODY_BYTES
            a.body = r.body
            ctype = OCTETS
        else:
            a.kind, a.body, ctype = body_of(r.body)
        if r.content_type is not None:
            ctype = content_type_bytes(r.content_type)
        if r.reason is not None:
            if _BAD_VALUE.search(r.reason):
                raise ValueError(f"invalid reason phrase {r.reason!r}")
            a.status_line = f"HTTP/1.1 {status} {r.reason}\r\n".encode("latin-1")
        if r.headers:
            take_fields(a, r.headers)
    else:
        a.kind, a.body, ctype = body_of(result)
    if status < 200 or status > 999:
        # An interim (1xx) answer would make the client take the next answer for this one.
        raise ValueError(f"invalid status {status} for a final answer")
    if a.status_line is None:
        a.status_line = STATUS_LINES.get(status) or status_line(status)
    # RFC 9110 6.4.1: no body for HEAD, 204 and 304; 204 carries no Content-Length, and 304
    # only one the handler announces (the length a 200 would have had).
    a.send_body = not ((req_flags & FL_REQ_HEAD) or status == 204 or status == 304)
    if a.kind == BODY_BYTES:
        if a.length is None:
            if status != 304:
                a.length = len(a.body)
        elif a.send_body and a.length != len(a.body):
            raise ValueError(f"content_length {a.length} but a body of {len(a.body)} bytes")
    elif a.kind == BODY_FILE:
        a.file_off = a.body.tell()
        a.file_len = _os.fstat(a.body.fileno()).st_size - a.file_off
        if a.file_len < 0:
            a.file_len = 0
        if a.length is None:
            a.length = a.file_len
    elif a.length is None and a.send_body:
        if req_flags & FL_REQ_HTTP10:
            a.close = True  # no chunked coding in 1.0: the close ends the body
        else:
            a.chunked = True
    if status == 204:
        a.length = None
        a.chunked = False
    a.ctype = ctype
    return a
