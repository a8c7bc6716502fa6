# ASGI 3 applications beside the loop, part 2b: the header fields, both ways. A request's head
# becomes the scope's headers list (head_fields), and an application's response headers
# become the head's field lines, checked as answer.pyx checks those of every other
# interface (asgi_fields). Both run once per request, so both work on bytes in C.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy


# The request header names most clients send, lower-cased: head_fields() gives each request
# these same objects instead of a new bytes object per field (the name of every field is
# compared here anyway, to lower-case it). Most frequent first.
cdef tuple KNOWN_NAMES = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
    b"content-type", b"content-length", b"cookie", b"referer", b"origin", b"cache-control",
    b"authorization", b"upgrade", b"pragma", b"if-none-match", b"if-modified-since",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
    b"x-request-id", b"transfer-encoding", b"expect", b"range", b"te", b"dnt",
    b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-dest", b"sec-fetch-user",
    b"upgrade-insecure-requests", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol", b"priority",
)
cdef enum:
    N_KNOWN = 37
cdef const char *known_name_p[N_KNOWN]
cdef Py_ssize_t known_name_len[N_KNOWN]


cdef void init_known_names() except *:
    assert len(KNOWN_NAMES) == N_KNOWN
    for i, name in enumerate(KNOWN_NAMES):
        # SAFETY: the bytes objects live in KNOWN_NAMES for the life of the module.
        known_name_p[i] = PyBytes_AS_STRING(name)
        known_name_len[i] = PyBytes_GET_SIZE(name)


init_known_names()


cdef inline int known_name(const char *s, Py_ssize_t n) noexcept nogil:
    """The index in KNOWN_NAMES of the header name s[0:n) (any case), or -1."""
    cdef int i
    cdef Py_ssize_t k
    cdef const char *want
    cdef char c
    for i in range(N_KNOWN):
        if known_name_len[i] != n:
            continue
        want = known_name_p[i]
        k = 0
        while k < n:
            c = s[k]
            if b"A" <= c <= b"Z":
                c = c + 32
            if c != want[k]:
                break
            k += 1
        if k == n:
            return i
    return -1


cdef list head_fields(const char *p, uint32_t head_len):
    """The request's header fields as ASGI wants them: (lower-cased name, value) bytes pairs
    in order, repeats kept. The C parser validated every line (a name, a colon, a value
    without CR or LF), so one pass over the head is exact here."""
    cdef list out = []
    cdef const char *end = p + head_len - 2   # the head's last CRLF
    cdef const char *line = <const char *>memchr(p, b"\n", head_len) + 1  # past the request line
    cdef const char *colon
    cdef const char *eol
    cdef const char *v
    cdef const char *ve
    cdef bytes name
    cdef char *np
    cdef Py_ssize_t i, n
    cdef int known
    while line < end:
        eol = <const char *>memchr(line, b"\r", end - line)
        if eol == NULL:
            break
        colon = <const char *>memchr(line, b":", eol - line)
        if colon == NULL:
            break
        n = colon - line
        known = known_name(line, n)
        if known >= 0:
            name = <bytes>PyTuple_GET_ITEM(KNOWN_NAMES, known)
        else:
            name = PyBytes_FromStringAndSize(NULL, n)
            np = PyBytes_AS_STRING(name)
            for i in range(n):
                np[i] = line[i] + 32 if b"A" <= line[i] <= b"Z" else line[i]
        v = colon + 1
        ve = eol
        while v < ve and (v[0] == b" " or v[0] == b"\t"):
            v += 1
        while ve > v and ((ve - 1)[0] == b" " or (ve - 1)[0] == b"\t"):
            ve -= 1
        out.append((name, PyBytes_FromStringAndSize(v, ve - v)))
        line = eol + 2
    return out


# What a response field means for the framing the core writes (answer.pyx's rules).
cdef enum:
    FIELD_PLAIN = 0
    FIELD_LENGTH = 1
    FIELD_CONNECTION = 2
    FIELD_DROP = 3
    FIELD_SERVER = 4
    FIELD_DATE = 5

# RFC 9110 5.6.2 tchar: the bytes of a field name (answer.pyx's _TOKEN, as a table).
cdef unsigned char TCHAR[256]


cdef void init_tchar() noexcept:
    cdef int c
    for c in range(256):
        TCHAR[c] = (b"0" <= c <= b"9") or (b"a" <= c <= b"z") or (b"A" <= c <= b"Z") or \
            (c != 0 and memchr(b"!#$%&'*+-.^_`|~", c, 15) != NULL)


init_tchar()


cdef inline bint is_token(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n == 0:
        return False
    for i in range(n):
        if not TCHAR[s[i]]:
            return False
    return True


cdef inline bint bad_value(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """A byte answer.pyx's _BAD_VALUE finds: a control character other than HTAB, or DEL."""
    cdef Py_ssize_t i
    for i in range(n):
        if (s[i] < 0x20 and s[i] != 0x09) or s[i] == 0x7f:
            return True
    return False


cdef inline bint name_is(const unsigned char *s, Py_ssize_t n, const char *lower,
                         Py_ssize_t k) noexcept nogil:
    """s[0:n) is the lower-case name lower[0:k), in any case (s is a token)."""
    cdef Py_ssize_t i
    if n != k:
        return False
    for i in range(n):
        if (s[i] | 0x20) != <unsigned char>lower[i]:  # (| 0x20 maps no other tchar onto a-z)
            return False
    return True


cdef inline int field_kind(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    if n == 14 and name_is(s, n, b"content-length", 14):
        return FIELD_LENGTH
    if n == 10:
        if name_is(s, n, b"connection", 10):
            return FIELD_CONNECTION
        if name_is(s, n, b"keep-alive", 10):
            return FIELD_DROP
    if n == 17 and name_is(s, n, b"transfer-encoding", 17):
        return FIELD_DROP
    if n == 6 and name_is(s, n, b"server", 6):
        return FIELD_SERVER
    if n == 4 and name_is(s, n, b"date", 4):
        return FIELD_DATE
    return FIELD_PLAIN


cdef inline int64_t length_value(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """A Content-Length value (digits, with blanks around them), or -1 (field_length()
    then raises with its message)."""
    cdef int64_t v = 0
    cdef Py_ssize_t i = 0
    while n and (s[n - 1] == b" " or s[n - 1] == b"\t"):
        n -= 1
    while i < n and (s[i] == b" " or s[i] == b"\t"):
        i += 1
    if i == n or n - i > 18:
        return -1
    while i < n:
        if not (b"0" <= s[i] <= b"9"):
            return -1
        v = v * 10 + (s[i] - 48)  # (48: "0")
        i += 1
    return v


cdef void asgi_fields(Answer a, headers) except *:
    """The application's header fields into a.fields (bytes names and values), with the
    framing rules of answer.pyx: Content-Length checked and announced by the core,
    Transfer-Encoding and Keep-Alive dropped, a close token in Connection honoured.

    Each field is checked and copied in C into one buffer: a few dozen instructions for the
    fields every answer carries, no object but the result."""
    cdef char stack[1024]
    cdef char *buf = stack
    cdef char *grown
    cdef Py_ssize_t used = 0, cap = sizeof(stack), need, nn, nv
    cdef int64_t length = -1, value_len
    cdef const unsigned char *np
    cdef const unsigned char *vp
    cdef int kind
    try:
        for pair in headers:
            name, value = pair
            if type(name) is not bytes or type(value) is not bytes:
                raise TypeError(f"header names and values are bytes, not {name!r}: {value!r}")
            np = <const unsigned char *>PyBytes_AS_STRING(name)
            nn = PyBytes_GET_SIZE(name)
            vp = <const unsigned char *>PyBytes_AS_STRING(value)
            nv = PyBytes_GET_SIZE(value)
            if not is_token(np, nn):
                raise ValueError(f"invalid response header name {name!r}")
            if bad_value(vp, nv):
                raise ValueError(f"invalid value for response header {name!r}: {value!r}")
            kind = field_kind(np, nn)
            if kind == FIELD_LENGTH:
                value_len = length_value(vp, nv)
                if value_len < 0:
                    field_length(value.decode("latin-1"))  # raises, with its message
                if length >= 0 and value_len != length:
                    raise ValueError("two different Content-Length fields")
                length = value_len
                continue
            if kind == FIELD_CONNECTION:
                if _CLOSE_TOKEN.search(value.decode("latin-1")):
                    a.close = True
                continue
            if kind == FIELD_DROP:
                continue
            if kind == FIELD_SERVER:
                a.own_server = True
            elif kind == FIELD_DATE:
                a.own_date = True
            need = used + nn + nv + 4
            if need > cap:
                cap = max(need, 2 * cap)
                grown = <char *>malloc(cap)
                if grown == NULL:
                    raise MemoryError()
                memcpy(grown, buf, used)
                if buf != stack:
                    free(buf)
                buf = grown
            memcpy(buf + used, np, nn)
            used += nn
            buf[used] = b":"
            buf[used + 1] = b" "
            memcpy(buf + used + 2, vp, nv)
            used += nv + 2
            buf[used] = b"\r"
            buf[used + 1] = b"\n"
            used += 2
        a.length = length if length >= 0 else None
        a.fields = PyBytes_FromStringAndSize(buf, used) if used else b""
    finally:
        if buf != stack:
            free(buf)
