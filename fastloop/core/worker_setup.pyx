# Building a Worker and freeing it: what it is given (limits, timeouts, the connection limit,
# its pools) and its copy of the route table (fastloop/routes.py's RouteTable; only its public
# fields are read): the static routes, answered in C, and the exact paths that stream their
# bodies or take WebSocket upgrades, as C tables the loop reads without the GIL. Copied when
# the worker is built: a static route or streaming path added later is not seen by this loop
# (a static route is answered by its Python twin then, which App.static registers).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc


cdef fl_static *exact_paths(list paths) except NULL:
    """A malloc'd table of exact paths for fl_match_path (only .path is set). SAFETY: it
    points into the bytes of paths, which the caller keeps alive as long as the table."""
    cdef fl_static *table = <fl_static *>malloc(max(1, len(paths)) * sizeof(fl_static))
    if table == NULL:
        raise MemoryError()
    for i, path in enumerate(paths):
        table[i].path = PyBytes_AS_STRING(path)
        table[i].path_len = PyBytes_GET_SIZE(path)
    return table


cdef int take_routes(Worker self, routes, JobPool ws_pool) except -1:
    """Fills self's route tables from routes. ws_pool: where an App's WebSocket jobs go
    (None: with every other job, to the handler pool)."""
    statics = tuple(routes.statics)
    self.static_keep = statics
    self.statics = <fl_static *>malloc(max(1, len(statics)) * sizeof(fl_static))
    if self.statics == NULL:
        raise MemoryError()
    for i, (path, head, body) in enumerate(statics):
        # SAFETY: the bytes live in self.static_keep for the worker's whole life.
        self.statics[i].path = PyBytes_AS_STRING(path)
        self.statics[i].path_len = PyBytes_GET_SIZE(path)
        self.statics[i].head = PyBytes_AS_STRING(head)
        self.statics[i].head_len = PyBytes_GET_SIZE(head)
        self.statics[i].body = PyBytes_AS_STRING(body)
        self.statics[i].body_len = PyBytes_GET_SIZE(body)
    self.nstatics = len(statics)
    streams = [p.encode("latin-1") for p in routes.stream_paths]
    self.static_keep = (statics, streams)
    self.streams = exact_paths(streams)
    self.nstreams = len(streams)
    # ASGI: every request with a body streams it to the application (http.request with
    # more_body); bodiless ones still go in batches.
    self.stream_bodies = bool(routes.stream_bodies)
    # Upgrades to WebSockets reach the application instead of being served as HTTP: an
    # ASGI one's on any path, an App's on its WebSocket routes' paths (their handlers run
    # on ws_pool, an asyncio loop of their own, while its HTTP handlers run on threads).
    self.websockets = bool(routes.websocket_any)
    ws_paths = [p.encode("latin-1") for p in routes.websocket_routes]
    self.ws_path_keep = ws_paths
    self.ws_paths = exact_paths(ws_paths)
    self.nws_paths = len(ws_paths)
    if ws_paths:
        self.websockets = True
    self.ws_pool_keep = ws_pool
    self.ws_pool = ws_pool.c_pool() if ws_pool is not None else NULL
    return 0


cdef int setup_worker(Worker self, int index, routes, JobPool handlers, bint is_tcp, dict limits,
                      dict timeouts, ConnLimit conn_limit, JobPool ws_pool) except -1:
    """Worker.__init__: its settings, pools and route tables."""
    tmo = dict(DEFAULT_TIMEOUTS, **(timeouts or {}))
    self.index = index
    self.is_tcp = is_tcp
    self.limits = limits_from(limits)
    # A chunked body is decoded in its read buffer, after a head of at most header_bytes
    # (<= FL_MAX_HEAD_BYTES, so this stays positive) and before undecoded framing.
    self.buffered_chunked_max = min(self.limits.body_bytes,
                                    <int64_t>FL_RBUF_MAX - self.limits.header_bytes - FL_CHUNK_SLACK)
    self.log_events = log.isEnabledFor(logging.DEBUG)
    # routes: the server's RouteTable (fastloop/routes.py); only its public fields are read.
    self.on_rejected = routes.on_rejected  # the access log (_observe.py)
    self.conn_limit = conn_limit
    if conn_limit is not None:
        # SAFETY: self.conn_limit keeps the shared counter alive as long as this worker.
        self.open_total = conn_limit.count
        self.max_open = conn_limit.limit
    for i, name in enumerate(TIMER_NAMES):
        if i:
            self.timers.lists[i].duration_ms = <int64_t>(tmo[name] * 1000)
    # SAFETY: self.handler_pool keeps the pool alive as long as this worker.
    self.handler_pool = handlers
    self.handlers = handlers.c_pool()
    take_routes(self, routes, ws_pool)
    self.ws_ping = self.timers.lists[FL_TIMER_WS_PING].duration_ms > 0
    return 0


cdef void free_worker(Worker self) noexcept:
    """Worker.__dealloc__: closes what is still open and frees every block the worker holds."""
    cdef uint32_t i
    cdef fl_conn *c
    for i in range(self.nslots):
        c = self.slots[i]
        if c.fd >= 0:
            conn_close(self, c)
        if c.rb.p != NULL:
            free(c.rb.p)
        if c.wb.p != NULL:
            free(c.wb.p)
        free(c)
    free(self.slots)
    free(self.free_slots)
    fl_bufpool_free(&self.pool)
    free(self.resume)
    free(self.touched)
    free(self.statics)
    free(self.streams)
    free(self.ws_room)
    free(self.ws_paths)
    if self.inbox != NULL:
        fl_inbox_close(self.inbox)  # late answers are dropped from now on
        fl_inbox_release(self.inbox)
