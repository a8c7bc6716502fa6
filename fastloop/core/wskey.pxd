# wskey.h declared once (contracts at the top of wskey.h). cimported as a namespace:
# `from fastloop.core cimport wskey`.

from libc.stdint cimport uint8_t


cdef extern from "wskey.h" nogil:
    size_t FL_WS_ACCEPT_LEN

    void fl_sha1(const uint8_t *p, size_t n, uint8_t *out)
    size_t fl_base64(const unsigned char *src, size_t n, char *out)
    void fl_ws_accept(const char *key, size_t n, char *out)
