# RFC 6455 framing without the GIL: the incremental frame parser and the frame writer.

from libc.errno cimport EINVAL
from libc.string cimport memcpy, memset


# --- Unmasking ---------------------------------------------------------------------------

cdef void fl_ws_unmask(uint8_t *data, size_t n, const uint8_t *key, uint32_t phase) noexcept nogil:
    """XORs data[0:n) in place with the 4-byte key, starting at key[phase & 3]: a payload can
    be unmasked piece by piece, phase being the bytes done before. Masking is the same XOR."""
    cdef uint8_t rot[8]
    cdef uint64_t m, w0, w1
    cdef size_t i = 0
    cdef int j
    for j in range(8):
        rot[j] = key[(phase + j) & 3]
    # Eight bytes at a time: the key repeats every 4 bytes, so one 64-bit word covers it at any
    # alignment; memcpy keeps unaligned loads legal and compiles to plain moves.
    memcpy(&m, rot, 8)
    while i + 16 <= n:
        memcpy(&w0, data + i, 8)
        memcpy(&w1, data + i + 8, 8)
        w0 ^= m
        w1 ^= m
        memcpy(data + i, &w0, 8)
        memcpy(data + i + 8, &w1, 8)
        i += 16
    while i < n:
        data[i] ^= rot[i & 7]
        i += 1


# --- The parser --------------------------------------------------------------------------
#
# Theory of operation. fl_ws_parse() consumes bytes from the caller's buffer and stops at the
# first event, returning how many bytes it consumed; the caller calls again with the rest.
# Headers and control payloads are copied into the parser as they arrive, so a caller may drop
# consumed bytes at any point. Data payloads are not copied: each DATA event is a span of the
# caller's buffer, unmasked in place, valid until the caller reuses that memory. Every check
# runs as soon as the byte it needs arrives: a bad opcode fails at the first header byte, bad
# UTF-8 at the first bad byte, an oversized message at its length field (before its payload).
#
# Messages with RSV1 (permessage-deflate) come out as compressed pieces: the caller inflates
# each one (fl_ws_inflate_begin/step, core/ws_deflate.pyx) before parsing on, and the inflater
# applies the UTF-8 and size checks to what it produces through fl_ws_message_data().

cdef void fl_ws_parser_init(fl_ws_parser *p, uint64_t max_message, int flags) noexcept nogil:
    memset(p, 0, sizeof(fl_ws_parser))
    p.max_message = max_message
    p.flags = flags


cdef Py_ssize_t fl_ws_fail(fl_ws_parser *p, fl_ws_event *ev, int code, const char *why,
                           size_t consumed) noexcept nogil:
    # Errors are sticky: the connection is failed, so later calls report the same error.
    if p.state != FL_WS_FAILED:
        p.state = FL_WS_FAILED
        p.error_code = code
        p.error_reason = why
        p.error_at = p.offset + consumed - (1 if consumed else 0)
        p.offset += consumed
    ev.type = FL_WS_EV_ERROR
    ev.code = p.error_code
    ev.reason = p.error_reason
    ev.data = NULL
    ev.len = 0
    return <Py_ssize_t>consumed


cdef bint fl_ws_close_code_ok(int code) noexcept nogil:
    # RFC 6455 7.4: 1004-1006 and 1015 are reserved (never on the wire), 0-999 and 1016-2999
    # unused; 3000-4999 belong to libraries and applications. 1012-1014, registered with IANA
    # after the RFC, are refused too (as the issue asks; the websockets library accepts them).
    return (1000 <= code <= 1003) or (1007 <= code <= 1011) or (3000 <= code <= 4999)


cdef int fl_ws_message_data(fl_ws_parser *p, const uint8_t *data, size_t n) noexcept nogil:
    """Accounts n payload bytes of the current message (after inflating): 0, -FL_WS_TOO_BIG
    past max_message, or -FL_WS_INVALID_DATA for text that is not UTF-8."""
    p.msg_len += n
    if p.msg_len > p.max_message:
        return -FL_WS_TOO_BIG
    if p.msg_opcode == FL_WS_TEXT and fl_utf8_feed(&p.utf8, data, n) >= 0:
        return -FL_WS_INVALID_DATA
    return 0


cdef int fl_ws_message_end(fl_ws_parser *p) noexcept nogil:
    """The message is complete: -FL_WS_INVALID_DATA if its text stops inside a character."""
    if p.msg_opcode == FL_WS_TEXT and p.utf8 != FL_UTF8_ACCEPT:
        return -FL_WS_INVALID_DATA
    return 0


cdef int fl_ws_check_byte0(fl_ws_parser *p) noexcept nogil:
    # FIN, RSV1-3 and the opcode, checked against the message state.
    cdef uint8_t b = p.hdr[0]
    cdef int op = b & 0x0F
    cdef bint rsv1 = (b & 0x40) != 0
    if b & 0x30:
        return -1  # RSV2/RSV3: no extension negotiated uses them
    p.fin = (b & 0x80) != 0
    p.opcode = op
    if op >= 8:
        if op > FL_WS_PONG:
            return -1
        if not p.fin or rsv1:
            return -1  # control frames are never fragmented nor compressed
        return 0
    if op == FL_WS_CONT:
        if not p.in_message or rsv1:
            return -1  # RSV1 belongs to a message's first frame only (RFC 7692 6.1)
        return 0
    if op > FL_WS_BINARY or p.in_message:
        return -1
    if rsv1 and not (p.flags & FL_WS_DEFLATE):
        return -1
    p.in_message = True
    p.msg_opcode = op
    p.msg_compressed = rsv1
    p.msg_wire = 0
    p.msg_len = 0
    p.utf8 = FL_UTF8_ACCEPT
    return 0


cdef uint32_t fl_ws_header_size(uint8_t b1) noexcept nogil:
    cdef uint32_t n = 2
    if (b1 & 0x7F) == 126:
        n += 2
    elif (b1 & 0x7F) == 127:
        n += 8
    if b1 & 0x80:
        n += 4
    return n


cdef inline bint fl_ws_has_mask(const uint8_t *key) noexcept nogil:
    # An all-zero key (legal, and what a server's unmasked frames amount to) unmasks to itself.
    return (key[0] | key[1] | key[2] | key[3]) != 0


cdef Py_ssize_t fl_ws_done(fl_ws_parser *p, size_t consumed) noexcept nogil:
    p.offset += consumed
    return <Py_ssize_t>consumed


cdef Py_ssize_t fl_ws_data(fl_ws_parser *p, fl_ws_event *ev, const uint8_t *data, size_t n,
                           size_t consumed) noexcept nogil:
    # Reports n payload bytes ending at buf[consumed]; the message ends with its FIN frame.
    p.frame_left -= n
    ev.type = FL_WS_EV_DATA
    ev.opcode = p.msg_opcode
    ev.compressed = p.msg_compressed
    ev.data = data
    ev.len = n
    ev.fin = p.fin and p.frame_left == 0
    if p.frame_left == 0:
        p.state = FL_WS_HEAD
        if p.fin:
            p.in_message = False
            if not p.msg_compressed and fl_ws_message_end(p) < 0:
                return fl_ws_fail(p, ev, FL_WS_INVALID_DATA, "text ends inside a character", consumed)
    return fl_ws_done(p, consumed)


cdef Py_ssize_t fl_ws_control(fl_ws_parser *p, fl_ws_event *ev, size_t consumed) noexcept nogil:
    # The control frame's payload is complete in p.ctl.
    cdef uint8_t st = FL_UTF8_ACCEPT
    if fl_ws_has_mask(p.mask):
        fl_ws_unmask(p.ctl, p.ctl_len, p.mask, 0)
    p.state = FL_WS_HEAD
    ev.data = p.ctl
    ev.len = p.ctl_len
    if p.opcode == FL_WS_PING:
        ev.type = FL_WS_EV_PING
    elif p.opcode == FL_WS_PONG:
        ev.type = FL_WS_EV_PONG
    else:
        if p.ctl_len == 0:
            ev.code = FL_WS_NO_STATUS
        elif p.ctl_len == 1:
            return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR, "close payload of one byte", consumed)
        else:
            ev.code = (<int>p.ctl[0] << 8) | p.ctl[1]
            if not fl_ws_close_code_ok(ev.code):
                return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR, "invalid close code", consumed)
            if fl_utf8_feed(&st, p.ctl + 2, p.ctl_len - 2) >= 0 or st != FL_UTF8_ACCEPT:
                return fl_ws_fail(p, ev, FL_WS_INVALID_DATA, "close reason is not UTF-8", consumed)
            ev.data = p.ctl + 2
            ev.len = p.ctl_len - 2
        ev.type = FL_WS_EV_CLOSE
        p.state = FL_WS_CLOSED
    return fl_ws_done(p, consumed)


cdef Py_ssize_t fl_ws_parse(fl_ws_parser *p, uint8_t *buf, size_t n, fl_ws_event *ev) noexcept nogil:
    """Parses buf[0:n) up to the first event. Returns the bytes consumed; ev.type says what was
    found, FL_WS_EV_NONE when all n bytes were consumed without an event. DATA payloads are
    unmasked in buf itself, which the caller owns: ev.data stays valid while buf does.
    After FL_WS_EV_ERROR (close with ev.code) and after a close frame, nothing more is parsed."""
    cdef size_t i = 0, take
    cdef uint32_t need, k
    cdef uint64_t length
    cdef Py_ssize_t bad
    ev.type = FL_WS_EV_NONE
    ev.data = NULL
    ev.len = 0
    if p.state == FL_WS_FAILED:
        return fl_ws_fail(p, ev, 0, NULL, 0)
    if p.state == FL_WS_CLOSED:
        return 0
    while i < n:
        if p.state == FL_WS_HEAD:
            if p.hdr_len == 0:
                p.hdr[0] = buf[i]
                p.hdr_len = 1
                i += 1
                if fl_ws_check_byte0(p) < 0:
                    return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR, "reserved opcode or bits", i)
                continue
            if p.hdr_len == 1:
                p.hdr[1] = buf[i]
                p.hdr_len = 2
                i += 1
                if ((p.hdr[1] & 0x80) != 0) == ((p.flags & FL_WS_FROM_SERVER) != 0):
                    return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR,
                                      "masking: clients must mask, servers must not", i)
                if p.opcode >= 8 and (p.hdr[1] & 0x7F) > FL_WS_MAX_CONTROL:
                    return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR, "control frame over 125 bytes", i)
            need = fl_ws_header_size(p.hdr[1])
            take = min(<size_t>(need - p.hdr_len), n - i)
            memcpy(p.hdr + p.hdr_len, buf + i, take)
            p.hdr_len += <uint32_t>take
            i += take
            if p.hdr_len < need:
                break
            # The header is complete: its length (any encoding, minimal or not), then its mask.
            length = p.hdr[1] & 0x7F
            k = 2
            if length == 126:
                length = (<uint64_t>p.hdr[2] << 8) | p.hdr[3]
                k = 4
            elif length == 127:
                length = 0
                for k in range(2, 10):
                    length = (length << 8) | p.hdr[k]
                k = 10
                if length >> 63:
                    return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR, "64-bit length with the high bit set", i)
            if p.hdr[1] & 0x80:
                memcpy(p.mask, p.hdr + k, 4)
            else:
                memset(p.mask, 0, 4)
            p.hdr_len = 0
            p.frame_left = length
            p.mask_phase = 0
            if p.opcode >= 8:
                p.state = FL_WS_CONTROL
                p.ctl_len = 0
                if length == 0:
                    return fl_ws_control(p, ev, i)
                continue
            # Checked on the wire length, before any payload: an uncompressed message over the
            # limit costs nothing to refuse. A compressed one is checked as it inflates; on the
            # wire it may be a little longer than inflated (incompressible data: deflate's
            # stored blocks), so it is allowed that slack here.
            if length > p.max_message + (((p.max_message >> 4) + 64) if p.msg_compressed else 0) - p.msg_wire:
                return fl_ws_fail(p, ev, FL_WS_TOO_BIG, "message over the size limit", i)
            p.msg_wire += length
            p.state = FL_WS_DATA
            if length == 0:
                if p.fin:
                    return fl_ws_data(p, ev, buf + i, 0, i)
                p.state = FL_WS_HEAD  # an empty fragment: nothing to report
            continue
        if p.state == FL_WS_DATA:
            take = n - i
            if take > p.frame_left:
                take = <size_t>p.frame_left
            if fl_ws_has_mask(p.mask):
                fl_ws_unmask(buf + i, take, p.mask, p.mask_phase)
                p.mask_phase = (p.mask_phase + <uint32_t>take) & 3
            if not p.msg_compressed:
                p.msg_len += take
                if p.msg_opcode == FL_WS_TEXT:
                    bad = fl_utf8_feed(&p.utf8, buf + i, take)
                    if bad >= 0:
                        return fl_ws_fail(p, ev, FL_WS_INVALID_DATA, "text is not UTF-8", i + <size_t>bad + 1)
            return fl_ws_data(p, ev, buf + i, take, i + take)
        # FL_WS_CONTROL
        take = n - i
        if take > p.frame_left:
            take = <size_t>p.frame_left
        memcpy(p.ctl + p.ctl_len, buf + i, take)
        p.ctl_len += <uint32_t>take
        p.frame_left -= take
        i += take
        if p.frame_left == 0:
            return fl_ws_control(p, ev, i)
    return fl_ws_done(p, i)


# --- The writer --------------------------------------------------------------------------

cdef size_t fl_ws_frame_header(uint8_t *out, bint fin, bint rsv1, int opcode, uint64_t n,
                               const uint8_t *mask) noexcept nogil:
    """Writes a frame header for an n-byte payload into out (FL_WS_MAX_HEADER bytes of room),
    with the shortest length encoding; returns its size. mask: NULL for a server's frames, a
    client's 4-byte key otherwise (the caller masks the payload with fl_ws_unmask)."""
    cdef size_t k = 2
    cdef int j
    out[0] = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (opcode & 0x0F)
    if n < 126:
        out[1] = <uint8_t>n
    elif n < 65536:
        out[1] = 126
        out[2] = <uint8_t>(n >> 8)
        out[3] = <uint8_t>n
        k = 4
    else:
        out[1] = 127
        for j in range(8):
            out[2 + j] = <uint8_t>(n >> (56 - 8 * j))
        k = 10
    if mask != NULL:
        out[1] |= 0x80
        memcpy(out + k, mask, 4)
        k += 4
    return k


cdef Py_ssize_t fl_ws_write_control(uint8_t *out, int opcode, const uint8_t *payload, size_t n) noexcept nogil:
    """A whole unmasked ping, pong or close frame into out (2 + 125 bytes of room): its size,
    or -EINVAL for a payload over 125 bytes."""
    if n > FL_WS_MAX_CONTROL:
        return -EINVAL
    cdef size_t k = fl_ws_frame_header(out, True, False, opcode, n, NULL)
    memcpy(out + k, payload, n)
    return <Py_ssize_t>(k + n)


cdef Py_ssize_t fl_ws_write_close(uint8_t *out, int code, const uint8_t *reason, size_t n) noexcept nogil:
    """A close frame with code and reason (code 0, no reason: an empty close) into out (127 bytes of room):
    its size, or -EINVAL when the reason is over 123 bytes or the code cannot be sent."""
    cdef uint8_t payload[FL_WS_MAX_CONTROL]
    if code == 0:
        return fl_ws_write_control(out, FL_WS_CLOSE, payload, 0) if n == 0 else -EINVAL
    if n > FL_WS_MAX_CONTROL - 2 or not fl_ws_close_code_ok(code):
        return -EINVAL
    payload[0] = <uint8_t>(code >> 8)
    payload[1] = <uint8_t>code
    memcpy(payload + 2, reason, n)
    return fl_ws_write_control(out, FL_WS_CLOSE, payload, n + 2)
