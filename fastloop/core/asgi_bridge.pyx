# ASGI 3 applications beside the loop, part 1: the bridge. One asyncio loop per server runs
# every request's application call, fed by the event loops through an fl_pool whose waker
# is a pipe.
#
# Theory of operation. The event loops queue jobs exactly as for the handler threads (see
# handoff.pyx), but the pool is an AsgiBridge: queueing a batch of jobs, or waking a job whose
# handler waits (room to send, body bytes, the client gone), writes one byte to the bridge's
# pipe if nobody was told yet. The asyncio loop reads the pipe (add_reader) and takes
# everything at once: one wake-up and one Python callback per batch, never one
# call_soon_threadsafe per request. Each new job becomes an AsgiCall (asgi_http.pyx), driven
# by one _CallTask (asgi_task.pyx, started at once, here), which calls the application for
# the job's requests in order; a WebSocket's call runs on an asyncio.Task.

cimport cython
import os as _os
from asyncio import Task as _Task

from posix.unistd cimport read

cdef str TASK_NAME = "fastloop-asgi"


@cython.final
cdef class _Peer:
    """The addresses of one connection: its token's entry in AsgiBridge.addresses. Two loops
    may use the same token, so the inbox (its loop's) is checked too."""
    cdef uint64_t token
    cdef size_t inbox
    cdef tuple pair


cdef tuple peer_pair(fl_job *j):
    """(client, server) of j's connection, asked of its socket (see connection_addresses)."""
    client = socket_address(j, 1)
    server = socket_address(j, 0)
    if type(client) is not tuple:
        client = None
    if server is not None and type(server) is not tuple:
        server = (server, None)
    return (client, server)


cdef class AsgiBridge(JobPool):
    """The pool of one server whose jobs an asyncio loop runs. on_readable() is the loop's
    reader callback for fileno(); spawn(call) starts each new AsgiCall (a task)."""

    cdef int rfd
    cdef bint eager                 # asyncio.Task(eager_start=True) exists (3.12+)
    cdef public set running         # the tasks of calls that have not finished
    cdef public object loop
    cdef public object app
    cdef public dict base_scope     # what every http scope shares (asgi, scheme, state...)
    cdef public object app_name
    cdef public object ws_config    # a WebSocketConfig (asgi_ws.pyx)
    cdef uint64_t handled
    cdef uint64_t app_errors        # the application raised, or returned without answering
    cdef uint64_t invalid           # it sent an invalid message
    cdef uint64_t disconnects       # receive() reported http.disconnect before the answer
    cdef uint64_t wakeups
    # token -> _Peer: the addresses of a connection, asked once (a connection's token is
    # never reused by its loop: it carries a generation; the loop is told by the inbox).
    # Cleared when large. The last one found is also kept in C, for the next request of the
    # same keep-alive connection.
    cdef dict addresses
    cdef _Peer last_peer
    cdef list spare                 # Responders of finished calls, for the next ones
    # what every http scope shares, from base_scope
    cdef object scope_asgi, scope_scheme, scope_root_path, scope_extensions
    cdef dict scope_state
    cdef dict scope_template        # an http scope for GET / HTTP/1.1, copied per request

    def __init__(self, app, loop, dict base_scope, app_name="ASGI app", bint eager=False):
        r, w = _os.pipe()
        _os.set_blocking(r, False)
        _os.set_blocking(w, False)
        self.rfd = r
        self.pool.notify_fd = w
        self.app = app
        self.loop = loop
        self.eager = eager
        self.running = set()
        self.base_scope = base_scope
        self.app_name = app_name
        self.ws_config = WebSocketConfig()
        self.addresses = {}
        self.spare = []
        self.scope_asgi = base_scope["asgi"]
        self.scope_scheme = base_scope.get("scheme", "http")
        self.scope_root_path = base_scope.get("root_path", "")
        state = base_scope.get("state")
        self.scope_state = {} if state is None else state  # the lifespan fills it later
        self.scope_extensions = base_scope.get("extensions", {})
        self.scope_template = {
            "type": "http", "asgi": self.scope_asgi, "http_version": "1.1", "method": "GET",
            "scheme": self.scope_scheme, "path": "/", "raw_path": b"/", "query_string": b"",
            "root_path": self.scope_root_path, "headers": None, "client": None,
            "server": None, "state": None, "extensions": self.scope_extensions,
        }

    cdef tuple connection_addresses(self, fl_job *j):
        """(client, server) of j's connection as ASGI scopes give them: (host, port) pairs,
        or None for the client and (path, None) for the server over a Unix socket."""
        cdef _Peer peer = self.last_peer
        if peer is not None and peer.token == j.token and peer.inbox == <size_t>j.inbox:
            return peer.pair
        found = self.addresses.get(j.token)
        if found is not None and (<_Peer>found).inbox == <size_t>j.inbox:
            self.last_peer = <_Peer>found
            return (<_Peer>found).pair
        pair = peer_pair(j)
        client = pair[0]
        if client is not None:  # (None: gone already, or a Unix socket: cheap to redo)
            if len(self.addresses) >= 65536:
                self.addresses.clear()
            peer = _Peer.__new__(_Peer)
            peer.token = j.token
            peer.inbox = <size_t>j.inbox
            peer.pair = pair
            self.addresses[j.token] = peer
            self.last_peer = peer
        return pair

    def fileno(self):
        return self.rfd

    def on_readable(self):
        """Takes every queued and woken job: woken ones look again, new ones start."""
        cdef char drain[256]
        cdef fl_job *jobs
        cdef fl_job *ready
        cdef fl_job *nxt
        cdef AsgiCall call
        cdef _CallTask ct
        exit_exc = None
        while read(self.rfd, drain, sizeof(drain)) == sizeof(drain):
            pass
        self.wakeups += 1
        jobs = fl_pool_take_all(&self.pool, &ready)
        while ready != NULL:
            nxt = ready.ready_next
            if ready.owner != NULL:
                (<AsgiCall>ready.owner).wake()
            fl_job_release(ready)
            ready = nxt
        while jobs != NULL:
            nxt = jobs.next
            jobs.next = NULL
            if jobs.reqs[0].req_flags & FL_REQ_WEBSOCKET:
                call = AsgiWsCall.__new__(AsgiWsCall)  # an upgrade (asgi_ws.pyx)
                call.adopt(self, jobs)  # takes the handler's reference
                # Named: a task without a name formats one ("Task-N"), about a sixth of its
                # cost. (A WebSocket lives long: what its task costs does not matter.)
                if self.eager:
                    task = _Task(call.run(), loop=self.loop, name=TASK_NAME, eager_start=True)
                else:
                    task = _Task(call.run(), loop=self.loop, name=TASK_NAME)
            else:
                call = AsgiCall.__new__(AsgiCall)
                call.adopt(self, jobs)
                # Runs at once, here, until it first waits (asgi_task.pyx).
                task = ct = _CallTask.__new__(_CallTask)
                try:
                    ct.start(self.loop, call)
                except BaseException as exc:  # an exit: after the batch is taken
                    exit_exc = exc
                if ct.state != T_PENDING:
                    jobs = nxt
                    continue
            if not task.done():
                call.task = task
                self.running.add(task)  # for stop(); AsgiCall.run takes it out
            jobs = nxt
        if exit_exc is not None:
            raise exit_exc

    def close(self):
        """No more jobs start; those queued are released (their loops close them)."""
        with nogil:
            pthread_mutex_lock(&self.pool.lock)
            self.pool.stopping = 1
            pthread_mutex_unlock(&self.pool.lock)
        self.drop_queued()
        if self.rfd >= 0:
            _os.close(self.rfd)
            _os.close(self.pool.notify_fd)
            self.rfd = -1
            with nogil:
                pthread_mutex_lock(&self.pool.lock)
                self.pool.notify_fd = -1
                self.pool.notified = 1  # never write again
                pthread_mutex_unlock(&self.pool.lock)

    def stats(self):
        return {"handled": self.handled, "handler_errors": self.app_errors + self.invalid,
                "asgi_app_errors": self.app_errors, "asgi_invalid_messages": self.invalid,
                "asgi_disconnects": self.disconnects, "asgi_wakeups": self.wakeups}
