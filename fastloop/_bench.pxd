# The layout of the load generator's extension module, fastloop._bench: each part's
# declarations live in loadgen/*.pxd (C headers are cimported there as namespaces).

include "loadgen/errors.pxd"
include "loadgen/hist.pxd"
include "loadgen/response.pxd"
include "loadgen/ws.pxd"
include "loadgen/conn.pxd"
include "loadgen/loop.pxd"
include "loadgen/views.pxd"
