# Thin Python views of the shared C headers buf.h, scan.h and wskey.h, for their tests
# (tests/test_buf.py, tests/test_scan.py, tests/test_bench_ws.py), as core/poller.pyx is for
# poller.h.

from fastloop.core cimport buf


cdef class Buf:
    cdef buf.fl_buf b
