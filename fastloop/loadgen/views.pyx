# Python views of buf.h, scan.h and wskey.h (see views.pxd). They add no logic: each method is one C
# call, so the tests check the headers themselves.

from libc.stdint cimport int64_t

from libc.stdint cimport uint8_t

from fastloop.core cimport buf, scan, wskey


BUF_MIN = buf.FL_BUF_MIN
SCAN_BARE_LF = scan.FL_SCAN_BARE_LF
SCAN_OVERFLOW = scan.FL_SCAN_OVERFLOW


cdef class Buf:
    """An fl_buf: reserve(n), put(data), consume(n), free(); the fields as properties and the
    live bytes as data()."""

    def __dealloc__(self):
        buf.fl_buf_free(&self.b)

    def reserve(self, size_t need):
        """0, or -ENOMEM (as the C call returns)."""
        return buf.fl_buf_reserve(&self.b, need)

    def put(self, bytes data):
        """Appends data; like the C call, only valid after reserve(len(data)) succeeded."""
        if <size_t>len(data) > buf.fl_buf_room(&self.b):
            raise ValueError("put() beyond the reserved room")  # the C call would overrun
        buf.fl_buf_put(&self.b, <const char *>data, len(data))

    def consume(self, size_t n):
        if n > buf.fl_buf_len(&self.b):
            raise ValueError("consume() beyond the live bytes")
        buf.fl_buf_consume(&self.b, n)

    def free(self):
        buf.fl_buf_free(&self.b)

    def data(self):
        """The live bytes, p[start:end)."""
        return buf.fl_buf_head(&self.b)[:buf.fl_buf_len(&self.b)] if self.b.p != NULL else b""

    @property
    def cap(self):
        return self.b.cap

    @property
    def start(self):
        return self.b.start

    @property
    def end(self):
        return self.b.end

    @property
    def room(self):
        return buf.fl_buf_room(&self.b)

    @property
    def address(self):
        """Where the block is (0 when none): tells a compaction (same block) from a growth."""
        return <size_t>self.b.p


def scan_head_end(bytes data, size_t start=0):
    """fl_scan_head_end over data."""
    return scan.fl_scan_head_end(<const char *>data, len(data), start)


def scan_hex(bytes data):
    """fl_scan_hex over data: (digits read or FL_SCAN_OVERFLOW, value)."""
    cdef int64_t v = 0
    cdef int n = scan.fl_scan_hex(<const char *>data, len(data), &v)
    return n, v


def sha1(bytes data):
    """fl_sha1 over data: the 20-byte digest."""
    cdef unsigned char out[20]
    wskey.fl_sha1(<const uint8_t *><const char *>data, len(data), out)
    return out[:20]


def base64(bytes data):
    """fl_base64 over data."""
    cdef bytearray out = bytearray(4 * ((len(data) + 2) // 3))
    cdef size_t n = wskey.fl_base64(<const unsigned char *><const char *>data, len(data), out)
    return bytes(out[:n])


def ws_accept(bytes key):
    """fl_ws_accept: the Sec-WebSocket-Accept value for key."""
    cdef char out[28]
    wskey.fl_ws_accept(<const char *>key, len(key), out)
    return out[:28]
