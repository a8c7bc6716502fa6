# What a worker logs, and when: C code cannot log without the GIL, so each rejection (an HTTP
# status) or timeout is noted during the turn and logged after it, in one batch with the GIL
# (flush_notes, from the loop). Requests the core answered with an error itself are also
# passed to the route table's on_rejected (the access log, _observe.py).
#
# These are Worker methods in all but syntax (see closing.pyx): module functions taking the
# Worker as `self`. note and note_rejected run on the worker's thread without the GIL.

from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcpy


cdef void note(Worker self, int what) noexcept nogil:
    """Remembers a rejection (an HTTP status) or a timeout (-kind) to log at DEBUG level
    after this turn: C code cannot log without the GIL, so notes wait for one batch."""
    if self.log_events and self.nevents_to_log < 64:
        self.events_to_log[self.nevents_to_log] = what
        self.nevents_to_log += 1


cdef void note_rejected(Worker self, fl_conn *c, int status) noexcept nogil:
    """For the access log (on_rejected): the client and the request line, as far as it was
    read, of a request the core answers itself with status. Taken now, while the request
    is in c's buffer and the descriptor open; logged after this turn (flush_notes). Past
    64 in one turn the rest are only counted (stats()["rejected"])."""
    cdef fl_rejected *r
    cdef const char *p
    cdef uint32_t n = 0, avail
    if self.on_rejected is None or self.nrejected_to_log >= 64:
        return
    r = &self.rejected_to_log[self.nrejected_to_log]
    self.nrejected_to_log += 1
    r.status = status
    r.sent = fl_error_responses[fl_status_index(status)].body_len
    if fl_socket_address(c.fd, 1, r.host, sizeof(r.host), &r.port) < 0:
        r.host[0] = 0
        r.port = -1
    if c.rb.p != NULL and c.rb.start < c.rb.end:
        # SAFETY: rb holds end bytes, the current request from start; copied, not kept.
        p = c.rb.p + c.rb.start
        avail = c.rb.end - c.rb.start
        while n < avail and n < sizeof(r.line) and p[n] != b'\r' and p[n] != b'\n':
            n += 1
        memcpy(r.line, p, n)
    r.line_len = n


cdef void flush_notes(Worker self) noexcept:
    cdef int i, what
    cdef fl_rejected *r
    try:
        for i in range(self.nrejected_to_log):
            r = &self.rejected_to_log[i]
            host = r.host.decode("utf-8", "surrogateescape")
            self.on_rejected(r.status, host if r.port < 0 else (host, r.port),
                             PyUnicode_DecodeLatin1(r.line, r.line_len, NULL), r.sent)
    except BaseException:
        log.exception("fastloop: logging a rejected request failed")
    self.nrejected_to_log = 0
    try:
        for i in range(self.nevents_to_log):
            what = self.events_to_log[i]
            if what >= FL_NOTE_WS:
                log.debug("fastloop: worker %d failed a WebSocket: close code %d", self.index,
                          what - FL_NOTE_WS)
            elif what > 0:
                log.debug("fastloop: worker %d rejected a request: %d (%s)", self.index, what,
                          fl_status_texts[fl_status_index(what)].decode())
            else:
                log.debug("fastloop: worker %d closed a connection: %s timeout", self.index,
                          TIMER_NAMES[-what])
    except BaseException:
        pass  # a failing log handler must not take the worker down
    self.nevents_to_log = 0
