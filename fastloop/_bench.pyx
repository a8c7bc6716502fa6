# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""fastloop's load generator (`fastloop bench`), an extension of its own: client loops over
epoll or kqueue, edge-triggered, without the GIL. fastloop/bench.py drives it."""

include "loadgen/errors.pyx"
include "loadgen/hist.pyx"
include "loadgen/response.pyx"
include "loadgen/ws.pyx"
include "loadgen/loop.pyx"
include "loadgen/loop_setup.pyx"
include "loadgen/ws_io.pyx"
include "loadgen/views.pyx"
