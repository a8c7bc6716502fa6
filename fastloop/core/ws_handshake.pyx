# The opening handshake (RFC 6455 4.2) and extension negotiation (RFC 7692 5, 7.1) over a
# parsed request head: fl_request spans into the caller's buffer, as core/http.pyx leaves them.

from libc.string cimport memcpy, memset, strlen


cdef const char *FL_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The answer to a version other than 13 (RFC 6455 4.4): the versions this server speaks.
cdef const char *FL_WS_426 = (b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
                              b"Content-Length: 0\r\nConnection: close\r\n\r\n")


cdef bint fl_next_element(const char *buf, uint32_t *pos, uint32_t end, fl_span *out) noexcept nogil:
    # The next element of the comma-separated list buf[*pos:end), trimmed of OWS, empty ones
    # skipped (RFC 9110 5.6.1): True with out its span, or False at the end of the list.
    cdef uint32_t i = pos[0], s, e
    while i < end and (fl_is_ows(buf[i]) or buf[i] == c','):
        i += 1
    pos[0] = i
    if i == end:
        return False
    s = i
    while i < end and buf[i] != c',':
        i += 1
    e = i
    while e > s and fl_is_ows(buf[e - 1]):
        e -= 1
    out.off = s
    out.len = e - s
    pos[0] = i
    return True


cdef bint fl_list_has(const char *buf, fl_span v, const char *lit, uint32_t n, bint fold) noexcept nogil:
    # Whether the comma-separated list v has the element lit (fold: ASCII case-insensitive,
    # lit lowercase).
    cdef uint32_t i = v.off, j
    cdef fl_span el
    while fl_next_element(buf, &i, v.off + v.len, &el):
        if el.len != n:
            continue
        j = 0
        while j < n:
            if fold and (<unsigned char>buf[el.off + j] | 0x20) != <unsigned char>lit[j]:
                break
            if not fold and buf[el.off + j] != lit[j]:
                break
            j += 1
        if j == n:
            return True
    return False


cdef inline bint fl_header_is(const char *buf, const fl_request *req, int i, const char *lit,
                              uint32_t n) noexcept nogil:
    return fl_span_eq_lower(buf, req.headers[i].name, lit, n)


cdef int fl_ws_check_upgrade(const char *buf, const fl_request *req, fl_span *key) noexcept nogil:
    """Checks a request head for a WebSocket upgrade. Returns 1 when it asks for none (serve it
    as HTTP), 0 for a valid one (key: its Sec-WebSocket-Key, for fl_ws_accept), -400 for a
    broken one, -426 for a version other than 13 (answer FL_WS_426)."""
    cdef int i, keys = 0, versions = 0
    cdef bint upgrade = False, connection = False, v13 = False
    cdef fl_span v
    key.off = 0
    key.len = 0
    for i in range(req.num_headers):
        v = req.headers[i].value
        if fl_header_is(buf, req, i, b"upgrade", 7):
            upgrade = upgrade or fl_list_has(buf, v, b"websocket", 9, True)
        elif fl_header_is(buf, req, i, b"connection", 10):
            connection = connection or fl_list_has(buf, v, b"upgrade", 7, True)
        elif fl_header_is(buf, req, i, b"sec-websocket-version", 21):
            versions += 1
            v13 = v.len == 2 and buf[v.off] == c'1' and buf[v.off + 1] == c'3'
        elif fl_header_is(buf, req, i, b"sec-websocket-key", 17):
            keys += 1
            key[0] = v
    if not upgrade:
        return 1
    if not (req.flags & FL_REQ_GET) or req.minor < 1 or not connection or versions != 1:
        return -400
    if keys != 1 or fl_base64_decoded_len(buf + key.off, key.len) != 16:
        return -400
    if not v13:
        return -426
    return 0


cdef void fl_ws_accept(const char *key, size_t n, char *out) noexcept nogil:
    """Sec-WebSocket-Accept for a key of n <= 24 bytes: FL_WS_ACCEPT_LEN chars into out."""
    cdef uint8_t data[24 + 36]
    cdef uint8_t digest[20]
    if n > 24:
        n = 24
    memcpy(data, key, n)
    memcpy(data + n, FL_WS_GUID, 36)
    fl_sha1(data, n + 36, digest)
    fl_base64_encode(digest, 20, out)


cdef int fl_ws_select_subprotocol(const char *buf, const fl_request *req, const char *supported,
                                  size_t n, fl_span *out) noexcept nogil:
    """supported[0:n): the server's subprotocols, comma-separated, most preferred first. Picks
    the first one that a Sec-WebSocket-Protocol header offers (case-sensitive tokens): 0 and
    out its span in supported, or -1 when none is (answer without the header)."""
    cdef uint32_t i = 0
    cdef int h
    cdef fl_span el
    while fl_next_element(supported, &i, <uint32_t>n, &el):
        for h in range(req.num_headers):
            if fl_header_is(buf, req, h, b"sec-websocket-protocol", 22) and \
                    fl_list_has(buf, req.headers[h].value, supported + el.off, el.len, False):
                out[0] = el
                return 0
    return -1


# --- permessage-deflate offers -----------------------------------------------------------

ctypedef struct fl_ws_offer:
    bint deflate              # the extension is permessage-deflate
    bint bad                  # one of its parameters is unknown, repeated or has a bad value
    int seen                  # parameters seen, one bit each
    bint server_no_context_takeover
    bint client_no_context_takeover
    int server_bits           # 0: absent
    int client_bits           # 0: absent, -1: present without a value


cdef int fl_ws_window_bits(const char *v, uint32_t n) noexcept nogil:
    # 1*DIGIT between 8 and 15, without leading zeros (RFC 7692 7.1.2): the value or -1.
    if n == 1 and c'8' <= v[0] <= c'9':
        return v[0] - c'0'
    if n == 2 and v[0] == c'1' and c'0' <= v[1] <= c'5':
        return 10 + v[1] - c'0'
    return -1


cdef bint fl_eq_fold(const char *s, uint32_t n, const char *lit, uint32_t m) noexcept nogil:
    # ASCII case-insensitive compare with a lowercase literal that may hold '_' (which
    # fl_span_eq_lower's OR-0x20 trick would not leave alone).
    cdef uint32_t i
    cdef char c
    if n != m:
        return False
    for i in range(n):
        c = s[i]
        if c'A' <= c <= c'Z':
            c = c + 32
        if c != lit[i]:
            return False
    return True


cdef void fl_ws_offer_param(fl_ws_offer *o, const char *name, uint32_t n, const char *val,
                            int vlen) noexcept nogil:
    # vlen -1: no value. A permessage-deflate offer with any bad parameter is declined (7.1).
    cdef int bit, bits
    if fl_eq_fold(name, n, b"server_no_context_takeover", 26):
        bit = 1
        o.server_no_context_takeover = True
        o.bad = o.bad or vlen >= 0
    elif fl_eq_fold(name, n, b"client_no_context_takeover", 26):
        bit = 2
        o.client_no_context_takeover = True
        o.bad = o.bad or vlen >= 0
    elif fl_eq_fold(name, n, b"server_max_window_bits", 22):
        bit = 4
        bits = fl_ws_window_bits(val, <uint32_t>vlen) if vlen >= 0 else -1
        o.server_bits = bits
        o.bad = o.bad or bits < 0
    elif fl_eq_fold(name, n, b"client_max_window_bits", 22):
        bit = 8
        bits = fl_ws_window_bits(val, <uint32_t>vlen) if vlen >= 0 else -1
        o.client_bits = bits
        o.bad = o.bad or (vlen >= 0 and bits < 0)
    else:
        o.bad = True
        return
    if o.seen & bit:
        o.bad = True
    o.seen |= bit


cdef uint32_t fl_scan_token(const char *buf, uint32_t i, uint32_t end) noexcept nogil:
    while i < end and fl_tchar[<unsigned char>buf[i]]:
        i += 1
    return i


cdef uint32_t fl_skip_ows(const char *buf, uint32_t i, uint32_t end) noexcept nogil:
    while i < end and fl_is_ows(buf[i]):
        i += 1
    return i


cdef int fl_ws_scan_offer(const char *buf, uint32_t *pos, uint32_t end, fl_ws_offer *o) noexcept nogil:
    """Reads the next extension of a Sec-WebSocket-Extensions list (RFC 6455 9.1) from
    buf[*pos:end) into o: 1 when one was read, 0 at the end of the list, -1 when the list is
    malformed. A quoted value is unescaped into a small buffer, enough for the values checked."""
    cdef uint32_t i = pos[0], s, e
    cdef char val[16]
    cdef int vlen
    cdef fl_span name
    memset(o, 0, sizeof(fl_ws_offer))
    while i < end and (fl_is_ows(buf[i]) or buf[i] == c','):
        i += 1
    if i == end:
        pos[0] = i
        return 0
    s = i
    i = fl_scan_token(buf, i, end)
    if i == s:
        return -1
    name.off = s
    name.len = i - s
    o.deflate = fl_span_eq_lower(buf, name, b"permessage-deflate", 18)
    while True:
        i = fl_skip_ows(buf, i, end)
        if i == end or buf[i] == c',':
            pos[0] = i + (1 if i < end else 0)
            return 1
        if buf[i] != c';':
            return -1
        i = fl_skip_ows(buf, i + 1, end)
        s = i
        i = fl_scan_token(buf, i, end)
        e = i
        if e == s:
            return -1
        i = fl_skip_ows(buf, i, end)
        vlen = -1
        if i < end and buf[i] == c'=':
            i = fl_skip_ows(buf, i + 1, end)
            vlen = 0
            if i < end and buf[i] == c'"':
                i += 1
                while i < end and buf[i] != c'"':
                    if buf[i] == c'\\':
                        i += 1
                        if i == end:
                            return -1
                    if vlen < 16:
                        val[vlen] = buf[i]
                    vlen += 1
                    i += 1
                if i == end:
                    return -1
                i += 1
            else:
                while i < end and fl_tchar[<unsigned char>buf[i]]:
                    if vlen < 16:
                        val[vlen] = buf[i]
                    vlen += 1
                    i += 1
                if vlen == 0:
                    return -1
            if vlen > 16:
                vlen = 16  # too long for any value checked here: still invalid as window bits
        if o.deflate:
            fl_ws_offer_param(o, buf + s, e - s, val, vlen)


cdef int fl_ws_negotiate_deflate(const char *buf, const fl_request *req,
                                 const fl_ws_deflate_config *cfg, fl_ws_deflate_params *out) noexcept nogil:
    """Meets the client's permessage-deflate offers (every Sec-WebSocket-Extensions header, in
    order) with what cfg allows: 0 and out filled for the first acceptable offer, or -1 when no
    offer is acceptable or the header is malformed (answer without the extension)."""
    cdef int h, rc, c
    cdef uint32_t pos, end
    cdef fl_ws_offer o
    for h in range(req.num_headers):
        if not fl_header_is(buf, req, h, b"sec-websocket-extensions", 24):
            continue
        pos = req.headers[h].value.off
        end = pos + req.headers[h].value.len
        while True:
            rc = fl_ws_scan_offer(buf, &pos, end, &o)
            if rc < 0:
                return -1
            if rc == 0:
                break
            if not o.deflate or o.bad:
                continue
            out.server_no_context_takeover = o.server_no_context_takeover or cfg.server_no_context_takeover
            out.client_no_context_takeover = o.client_no_context_takeover or cfg.client_no_context_takeover
            out.server_max_window_bits = cfg.server_max_window_bits
            if o.server_bits and o.server_bits < out.server_max_window_bits:
                out.server_max_window_bits = o.server_bits
            out.send_server_bits = o.server_bits != 0 or out.server_max_window_bits < 15
            # The client's window can only be limited when the offer says it may be (7.1.2.2).
            c = 15
            if o.client_bits == -1:
                c = cfg.client_max_window_bits
            elif o.client_bits > 0:
                c = min(o.client_bits, cfg.client_max_window_bits)
            out.client_max_window_bits = c
            out.send_client_bits = o.client_bits > 0 or (o.client_bits == -1 and c < 15)
            return 0
    return -1


cdef size_t fl_append(char *out, size_t k, const char *s) noexcept nogil:
    cdef size_t n = strlen(s)
    memcpy(out + k, s, n)
    return k + n


cdef size_t fl_append_bits(char *out, size_t k, const char *name, int bits) noexcept nogil:
    k = fl_append(out, k, name)
    if bits >= 10:
        out[k] = c'1'
        k += 1
    out[k] = <char>(c'0' + bits % 10)
    return k + 1


cdef size_t fl_ws_deflate_response(const fl_ws_deflate_params *d, char *out) noexcept nogil:
    """The Sec-WebSocket-Extensions value accepting d, into out (FL_WS_EXT_RESPONSE_MAX bytes of
    room); returns its length."""
    cdef size_t k = fl_append(out, 0, b"permessage-deflate")
    if d.server_no_context_takeover:
        k = fl_append(out, k, b"; server_no_context_takeover")
    if d.client_no_context_takeover:
        k = fl_append(out, k, b"; client_no_context_takeover")
    if d.send_server_bits:
        k = fl_append_bits(out, k, b"; server_max_window_bits=", d.server_max_window_bits)
    if d.send_client_bits:
        k = fl_append_bits(out, k, b"; client_max_window_bits=", d.client_max_window_bits)
    return k


cdef size_t fl_ws_write_101(char *out, const char *accept, const char *protocol, size_t plen,
                            const char *extensions, size_t elen) noexcept nogil:
    """The 101 answer into out (FL_WS_101_ROOM + plen + elen bytes of room), naming protocol and
    extensions when their length is not 0; returns its length."""
    cdef size_t k = fl_append(out, 0, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")
    memcpy(out + k, accept, FL_WS_ACCEPT_LEN)
    k += FL_WS_ACCEPT_LEN
    if plen:
        k = fl_append(out, k, b"\r\nSec-WebSocket-Protocol: ")
        memcpy(out + k, protocol, plen)
        k += plen
    if elen:
        k = fl_append(out, k, b"\r\nSec-WebSocket-Extensions: ")
        memcpy(out + k, extensions, elen)
        k += elen
    return fl_append(out, k, b"\r\n\r\n")
