# What event loops and handler threads share: a loop's inbox, the messages that answers travel
# in, the job that carries one request to a handler thread, and the pool of handler threads.
# Every field that both sides touch is read and written under the lock of its struct, or only
# through core/atomic.h (reference counts, inbox.stopping): nothing relies on the GIL, which a
# free-threaded CPython does not have; see the theory of operation in handoff.pyx.

from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "poolwait.h" nogil:
    int64_t fl_pool_now_ns()
    int fl_cond_init_timed(pthread_cond_t *c)
    int fl_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)


# fl_msg.kind: what a handler thread asks of the loop that owns the connection
cdef enum:
    MSG_DATA = 1        # bytes of the answer, in order (data, len: owned by the message)
    MSG_FILE = 2        # count bytes of file fd from off, with sendfile (fd: a dup, owned)
    MSG_END = 3         # the answer is complete: the connection's next request may be parsed
    MSG_CONTINUE = 4    # the handler is reading the body: send "100 Continue" if still due
    MSG_READ = 5        # the handler took body bytes: reading the socket may resume
    MSG_WS_OPEN = 6     # the 101 is out (a MSG_DATA before it): frames from now on (ws_conn.pyx)
    MSG_WS_CLOSE = 7    # send a WebSocket close frame: count = code (0: answer the peer's)

# fl_msg.flags of MSG_END
cdef enum:
    END_CLOSE = 1       # close the connection after this answer (it said so, or was cut)
    END_CUT = 2         # the answer is incomplete: close without a lingering drain
    END_MORE = 8        # the client is behind: the job's other requests wait (fl_job.start)

# fl_msg.flags of MSG_DATA
cdef enum:
    MSG_WS_FRAME = 16   # a WebSocket frame of the application: dropped once a close is sent

ctypedef struct fl_msg:
    fl_msg *next
    uint64_t token      # the connection, in its loop
    int kind
    int flags
    char *data
    size_t len
    int fd
    int64_t off         # MSG_FILE: where to start; MSG_DATA: answer bytes the handler sent
                        # itself before this message (fl_job_send), for the loop's counts
    int64_t count

ctypedef struct fl_inbox:
    # One per loop. An Acceptor pushes new descriptors; handler threads post messages. The
    # poller is woken, under the lock, only when the inbox turns non-empty: one wake-up per
    # batch. Once closed (its loop has stopped), everything posted is dropped and counted.
    pthread_mutex_t lock
    int refs            # atomic: the loop's, and one per job that may post here
    int closed
    int stopping        # atomic: the loop is stopping, answers say Connection: close
    int *fds
    int n
    int cap
    fl_msg *head
    fl_msg *tail
    fl_poller *poller
    uint64_t dropped    # messages posted after the loop was gone (late answers)

ctypedef struct fl_jobreq:
    # One request of a job: where its head (and body, right after it) is in fl_job.req.
    uint32_t off
    uint32_t head_len
    uint64_t body_len
    fl_request_line line
    int req_flags

ctypedef struct fl_job:
    # One request on its way to a handler thread and its answer on the way back. The loop
    # fills the request part before the job is queued and never changes it after; the shared
    # part is under lock. Two references: the loop's (dropped when the connection closes or the
    # answer ends) and the handler's (dropped when it is done).
    fl_job *next        # in the pool's queue
    int64_t queued_ns   # when it was queued (fl_pool_now_ns), under the pool's lock
    int refs            # atomic
    uint64_t token
    fl_inbox *inbox     # a reference: answers go there
    char *req           # the requests' heads and whole bodies, one after the other (owned)
    fl_jobreq *reqs     # nreqs requests of one connection, pipelined, answered in order
    int nreqs
    int start           # the first request not answered yet (the handler's; see END_MORE)
    int stream          # one request whose body the handler reads as it arrives (body below)
    # shared, under lock
    pthread_mutex_t lock
    pthread_cond_t cond
    int fd              # the connection's socket while it is open, else -1 (for addresses)
    int gone            # the connection closed: producing more is pointless
    int direct          # the handler may send its answer on fd itself (fl_job_send): set by
                        # the loop when it queues the job with nothing unsent on the
                        # connection; cleared when it is taken with others queued behind it
                        # (fl_pool_take, fl_pool_take_all), by the first message the loop must send
                        # (fl_job_post), or by a send that did not take every byte
    uint64_t posted     # answer bytes the handler posted
    uint64_t sent       # answer bytes the loop wrote to the socket
    int wait_room       # the handler waits for sent to catch up with posted
    char *body          # a streaming route's body bytes, received and not yet taken
    size_t body_n
    size_t body_cap
    int body_end        # 0 more to come, 1 complete, or -status (400, 408, 413; -1: reset)
    int wait_body       # the handler waits for body bytes
    int body_paused     # the loop stopped reading because body_n passed the high-water mark
    int peer_eof        # the client shut its side (FIN or reset) while the handler ran
    # An asyncio pool's handler is not a thread that can wait on cond: waking the job puts it
    # on its pool's ready list instead (fl_job_wake). pool is set when the job is queued.
    fl_pool *pool
    fl_job *ready_next  # on pool.ready, under the pool's lock
    int ready           # on pool.ready (under the pool's lock)
    void *owner         # the asyncio side's object for this job (only touched by that thread)
    int req_apart       # req is an allocation of its own (a WebSocket's head: freed once read)

ctypedef struct fl_pool:
    # The jobs waiting for a handler thread, FIFO, shared by every loop of a server.
    pthread_mutex_t lock
    pthread_cond_t cond
    fl_job *head
    fl_job *tail
    int idle            # threads waiting on cond
    int stopping
    uint64_t queued     # jobs ever queued (for stats)
    # Handler threads under a GIL (fl_pool_wait): a second thread joins the one running jobs
    # only once the oldest queued job has waited watch_ns (that one is blocked, not busy); 0:
    # at once (a free-threaded CPython, where threads run in parallel).
    int running         # threads that fl_pool_wait let run, until they wait again
    int watching        # one thread waits on watch_cond, with a deadline, for the queue to stall
    pthread_cond_t watch_cond
    int64_t watch_ns
    int64_t pushed_ns   # when jobs were last queued: the watcher stays on watch for a while after
    # For a pool whose jobs are run by an asyncio loop rather than threads: a pipe's write
    # end (else -1), written once when jobs or woken jobs appear and nobody was told yet.
    int notify_fd
    int notified
    fl_job *ready       # jobs whose waiting handler must look again (room, body, gone)
    fl_job *ready_tail
