# A worker's copy of the route table it is given (fastloop/routes.py's RouteTable; only its
# public fields are read): the static routes, answered in C, and the exact paths that stream
# their bodies or take WebSocket upgrades, as C tables the loop reads without the GIL.
# Copied when the worker is built: a static route or streaming path added later is not seen
# by this loop (a static route is answered by its Python twin then, which App.static registers).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport malloc


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
