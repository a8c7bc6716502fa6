# The layout of the one extension module: each part's declarations live in core/*.pxd.

from libc.stdint cimport int64_t, uint32_t, uint64_t

include "includes/system.pxd"

include "core/poller.pxd"
include "core/http.pxd"
include "core/status.pxd"
include "core/handoff.pxd"
include "core/conn.pxd"
include "core/timers.pxd"
include "core/bufpool.pxd"
include "core/worker.pxd"
