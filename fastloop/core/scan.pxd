# scan.h declared once (contracts at the top of scan.h). cimported as a namespace:
# `from fastloop.core cimport scan`.

from libc.stdint cimport int64_t


cdef extern from "scan.h" nogil:
    ssize_t FL_SCAN_BARE_LF
    int FL_SCAN_OVERFLOW

    ssize_t fl_scan_head_end(const char *buf, size_t n, size_t start)
    int fl_scan_hex(const char *buf, size_t n, int64_t *out)
