# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""fastloop's compiled core: edge-triggered event loops over epoll or kqueue, HTTP/1.1."""

import logging

log = logging.getLogger("fastloop")

include "core/errors.pyx"
include "core/poller.pyx"
include "core/http.pyx"
include "core/http_fields.pyx"
include "core/http_chunked.pyx"
include "core/ws.pyx"
include "core/answer.pyx"
include "core/response.pyx"
include "core/handoff.pyx"
include "core/handoff_pool.pyx"
include "core/request.pyx"
include "core/handler.pyx"
include "core/wsgi_fast.pyx"
include "core/wsgi_call.pyx"
include "core/asgi_bridge.pyx"
include "core/asgi_calls.pyx"
include "core/asgi_fields.pyx"
include "core/asgi_http.pyx"
include "core/asgi_task.pyx"
include "core/loop.pyx"
include "core/bufpool.pyx"
include "core/timers.pyx"
include "core/conn_state.pyx"
include "core/conn_io.pyx"
include "core/jobs.pyx"
include "core/ws_conn.pyx"
include "core/asgi_ws.pyx"
include "core/closing.pyx"
include "core/conn_check.pyx"
include "core/notes.pyx"
include "core/worker.pyx"
include "core/worker_setup.pyx"
include "core/acceptor.pyx"

POLLER = FL_POLLER_NAME.decode()
