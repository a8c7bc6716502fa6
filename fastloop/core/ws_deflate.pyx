# permessage-deflate (RFC 7692) over zlib, without the GIL.
#
# Receiving: each compressed piece the parser reports is inflated into the caller's room, a
# bounded step at a time; what comes out is checked as message data (UTF-8, max_message) at
# once, so a decompression bomb stops after max_message + one step of output, whatever its
# ratio. The message's last piece is followed by the 00 00 ff ff that senders strip (7.2.2).
# Sending: a whole message is deflated with a sync flush and the same 4 bytes stripped.
#
# Memory per connection (zlib's documented sizes, counted exactly by fl_ws_zalloc):
#   inflate: about 7 KiB of state + a 2^client_max_window_bits window (32 KiB at 15), allocated
#            at the first compressed message only;
#   deflate: about 6 KiB of state + 2^(server_max_window_bits + 2) + 2^(mem_level + 9) bytes
#            (256 KiB at 15 and mem_level 8; 16 + 16 KiB at 12 and mem_level 5), allocated at
#            the first compressed message sent.
# With no context takeover both keep their memory and reset between messages; a connection that
# never compresses holds none.

from libc.errno cimport ENOBUFS, ENOMEM
from libc.stdlib cimport free, malloc
from libc.string cimport memset


cdef uint8_t FL_WS_TAIL[4]
FL_WS_TAIL[:] = [0x00, 0x00, 0xFF, 0xFF]


cdef void *fl_ws_zalloc(void *opaque, unsigned items, unsigned size) noexcept nogil:
    # Every zlib allocation goes through here so that a connection's memory can be counted. A
    # 16-byte prefix records the size and keeps the block as aligned as malloc's.
    cdef size_t n = <size_t>items * size
    cdef fl_ws_zcount *count = <fl_ws_zcount *>opaque
    cdef size_t *block = <size_t *>malloc(n + 16)
    if block == NULL:
        return NULL
    block[0] = n
    count.bytes += n
    if count.bytes > count.peak:
        count.peak = count.bytes
    return <char *>block + 16


cdef void fl_ws_zfree(void *opaque, void *address) noexcept nogil:
    cdef size_t *block = <size_t *>(<char *>address - 16)
    (<fl_ws_zcount *>opaque).bytes -= block[0]
    free(block)


cdef void fl_ws_zinit(z_stream *z, fl_ws_zcount *count) noexcept nogil:
    memset(z, 0, sizeof(z_stream))
    z.zalloc = fl_ws_zalloc
    z.zfree = fl_ws_zfree
    z.opaque = count


# --- Inflating ---------------------------------------------------------------------------

cdef void fl_ws_inflater_init(fl_ws_inflater *f, int window_bits, bint no_context_takeover) noexcept nogil:
    """Sets f up for the client's negotiated window and takeover; allocates nothing yet."""
    memset(f, 0, sizeof(fl_ws_inflater))
    # A window larger than the sender's decodes its stream just as well; 9 rather than 8 because
    # zlib before 1.2.9 silently compressed with 9 when asked for 8, and such peers still exist.
    f.window_bits = window_bits if window_bits > 8 else 9
    f.no_context_takeover = no_context_takeover


cdef void fl_ws_inflater_free(fl_ws_inflater *f) noexcept nogil:
    if f.ready:
        inflateEnd(&f.z)
        f.ready = False


cdef int fl_ws_inflate_begin(fl_ws_inflater *f, const uint8_t *data, size_t n, bint fin) noexcept nogil:
    """Starts inflating a compressed piece (an FL_WS_EV_DATA event's data, n and fin), which
    must stay valid until fl_ws_inflate_step() has returned 0. Returns 0 or -ENOMEM."""
    if not f.ready:
        fl_ws_zinit(&f.z, &f.mem)
        if inflateInit2(&f.z, -f.window_bits) != Z_OK:
            return -ENOMEM
        f.ready = True
    # SAFETY: zlib only reads next_in; the cast drops const for its (non-const) declaration.
    f.z.next_in = <unsigned char *>data
    f.z.avail_in = <unsigned>n
    f.tail_pending = fin
    f.fin = fin
    return 0


cdef int fl_ws_inflate_step(fl_ws_inflater *f, fl_ws_parser *p, uint8_t *out, size_t room,
                            size_t *produced) noexcept nogil:
    """Inflates the current piece into out[0:room): *produced bytes, already checked as the
    message's data through p (UTF-8 for text, max_message). Returns 1 when more output may
    follow (consume out, call again), 0 when the piece is done (and for the last piece, the
    message is complete and valid), or -close code: -FL_WS_TOO_BIG, -FL_WS_INVALID_DATA, or
    -FL_WS_PROTOCOL_ERROR for data that is not deflate."""
    cdef int rc
    f.z.next_out = out
    f.z.avail_out = <unsigned>room
    while True:
        if f.z.avail_in == 0 and f.tail_pending:
            f.z.next_in = FL_WS_TAIL
            f.z.avail_in = 4
            f.tail_pending = False
        if f.stream_ended:
            f.z.avail_in = 0
            f.tail_pending = False
            break
        rc = inflate(&f.z, Z_SYNC_FLUSH)
        if rc == Z_STREAM_END:
            # The sender ended its stream with a final block (RFC 7692 7.2.3.4 allows it): the
            # rest of the message, our appended tail included, is past its end and ignored,
            # and the next message starts a new stream.
            inflateReset(&f.z)
            f.stream_ended = True
        elif rc != Z_OK and rc != Z_BUF_ERROR:
            produced[0] = 0
            return -FL_WS_PROTOCOL_ERROR
        if f.z.avail_out == 0 or (f.z.avail_in == 0 and not f.tail_pending):
            break
        if rc == Z_BUF_ERROR:
            break  # no progress possible with what is here (cannot happen with input and room)
    produced[0] = room - f.z.avail_out
    rc = fl_ws_message_data(p, out, produced[0])
    if rc < 0:
        return rc
    if f.z.avail_out == 0:
        return 1
    if f.fin:
        if f.no_context_takeover and not f.stream_ended:
            inflateReset(&f.z)
        f.stream_ended = False
        return fl_ws_message_end(p)
    return 0


cdef Py_ssize_t fl_ws_inflate_failed(fl_ws_parser *p, fl_ws_event *ev, int rc) noexcept nogil:
    """Fails the connection for an error rc of fl_ws_inflate_begin/step: ev becomes the ERROR
    event (sticky in p, as the parser's own errors are). Returns 0 (bytes consumed)."""
    if rc == -FL_WS_TOO_BIG:
        return fl_ws_fail(p, ev, FL_WS_TOO_BIG, "message over the size limit once inflated", 0)
    if rc == -FL_WS_INVALID_DATA:
        return fl_ws_fail(p, ev, FL_WS_INVALID_DATA, "inflated text is not UTF-8", 0)
    if rc == -FL_WS_PROTOCOL_ERROR:
        return fl_ws_fail(p, ev, FL_WS_PROTOCOL_ERROR, "compressed data is not deflate", 0)
    return fl_ws_fail(p, ev, FL_WS_INTERNAL_ERROR, "no memory for zlib", 0)


# --- Deflating ---------------------------------------------------------------------------

cdef void fl_ws_deflater_init(fl_ws_deflater *d, int window_bits, bint no_context_takeover,
                              int level, int mem_level) noexcept nogil:
    """Sets d up for the server's negotiated window and takeover; allocates nothing yet."""
    memset(d, 0, sizeof(fl_ws_deflater))
    d.window_bits = window_bits
    d.no_context_takeover = no_context_takeover
    d.level = level
    d.mem_level = mem_level


cdef void fl_ws_deflater_free(fl_ws_deflater *d) noexcept nogil:
    if d.ready:
        deflateEnd(&d.z)
        d.ready = False


cdef size_t fl_ws_deflate_bound(size_t n) noexcept nogil:
    """Room that fl_ws_deflate() needs for an n-byte message: incompressible data grows by the
    stored blocks' 5-byte headers (at least every 128 bytes at the smallest mem_level)."""
    return n + n // 16 + 64


cdef Py_ssize_t fl_ws_deflate(fl_ws_deflater *d, const uint8_t *data, size_t n, uint8_t *out,
                              size_t room) noexcept nogil:
    """Compresses one whole message into out[0:room) (room >= fl_ws_deflate_bound(n)). Returns
    the payload length, the 00 00 ff ff tail stripped (send it with RSV1), or -ENOMEM /
    -ENOBUFS (room too small)."""
    cdef int rc, bits = d.window_bits, strategy = Z_DEFAULT_STRATEGY
    cdef size_t k
    if not d.ready:
        fl_ws_zinit(&d.z, &d.mem)
        if bits == 8:
            # zlib refuses a raw 256-byte window; with Z_RLE it only refers one byte back,
            # which any window allows.
            bits = 9
            strategy = Z_RLE
        if deflateInit2(&d.z, d.level, Z_DEFLATED, -bits, d.mem_level, strategy) != Z_OK:
            return -ENOMEM
        d.ready = True
    # SAFETY: zlib only reads next_in; the cast drops const for its (non-const) declaration.
    d.z.next_in = <unsigned char *>data
    d.z.avail_in = <unsigned>n
    d.z.next_out = out
    d.z.avail_out = <unsigned>room
    rc = deflate(&d.z, Z_SYNC_FLUSH)
    if (rc != Z_OK and rc != Z_BUF_ERROR) or d.z.avail_out == 0 or d.z.avail_in != 0:
        deflateReset(&d.z)
        return -ENOBUFS
    k = room - d.z.avail_out
    if k >= 4 and out[k - 4] == 0 and out[k - 3] == 0 and out[k - 2] == 0xFF and out[k - 1] == 0xFF:
        k -= 4
    if k == 0:
        # Nothing to flush (an empty message right after another: zlib emits no new block).
        # The receiver appends 00 00 ff ff, which is only the LEN/NLEN of a stored block, so
        # send the block's header byte for it (RFC 7692 7.2.3.6 sends an empty message as 00).
        out[0] = 0
        k = 1
    if d.no_context_takeover:
        deflateReset(&d.z)
    return <Py_ssize_t>k
