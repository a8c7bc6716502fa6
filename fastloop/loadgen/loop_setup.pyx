# Building a BenchLoop (BenchLoop.__init__, which documents the arguments): its settings, the
# target and source addresses, the request copied cfg.pipeline times, and its slots.

from libc.stdint cimport INT64_MAX, int64_t
from libc.stdlib cimport calloc, malloc
from libc.string cimport memcpy

from fastloop.loadgen cimport client


cdef int setup_loop(BenchLoop self, int first_conn, int connections, int total_connections,
                    int family, bytes address, int port, list sources, bytes request, int pipeline,
                    bint keepalive, double rate, long long budget, double timeout,
                    double connect_timeout, bint head, tuple local_ports, bytes ws_message,
                    bint ws_binary, int ws_key_offset, bytes seed) except -1:
    cdef int i, rc
    cdef bytes src
    if connections < 1 or pipeline < 1:
        raise ValueError("connections and pipeline must be at least 1")
    if len(address) not in (4, 16):
        raise ValueError("address must be a packed IPv4 or IPv6 address")
    self.cfg.flags = (FB_CFG_KEEPALIVE if keepalive else 0) | (FB_CFG_RATE if rate > 0 else 0)
    if head:
        self.cfg.flags |= FB_CFG_HEAD
    self.cfg.pipeline = pipeline
    self.cfg.timeout_ns = <int64_t>(timeout * 1e9)
    self.cfg.connect_timeout_ns = <int64_t>(connect_timeout * 1e9)
    self.cfg.retry_ns = 1000000  # 1 ms: a refused port must not turn the loop into a spin
    self.cfg.rate_interval_ns = 1e9 / rate if rate > 0 else 0.0
    self.cfg.total_conns = total_connections
    if local_ports is not None:
        self.cfg.port_lo, self.cfg.port_hi = local_ports
    self.budget = budget
    if ws_message is not None:
        if pipeline != 1 or not keepalive or head:
            raise ValueError("WebSocket mode sends one message at a time on kept connections")
        if not 0 <= ws_key_offset <= len(request) - FB_WS_KEY_LEN or seed is None \
                or len(seed) != 8:
            raise ValueError("WebSocket mode needs the key's offset and an 8-byte seed")
        self.cfg.flags |= FB_CFG_WS
        self.wsmsg_len = len(ws_message)
        self.wsmsg = <unsigned char *>malloc(self.wsmsg_len + 1)
        if self.wsmsg == NULL:
            raise MemoryError()
        memcpy(self.wsmsg, <const char *>ws_message, self.wsmsg_len)
        self.ws_opcode = FB_WS_OP_BINARY if ws_binary else FB_WS_OP_TEXT
        self.key_offset = ws_key_offset
        self.rng = int.from_bytes(seed, "little") | 1  # xorshift must not start at 0
    rc = client.fl_make_sockaddr(family, <const char *>address, port, &self.target)
    if rc < 0:
        raise_errno(-rc, "target address")
    self.target_len = rc
    self.family = family
    if sources:
        self.sources = <client.sockaddr_storage *>calloc(len(sources),
                                                         sizeof(client.sockaddr_storage))
        self.source_lens = <int *>calloc(len(sources), sizeof(int))
        if self.sources == NULL or self.source_lens == NULL:
            raise MemoryError()
        for i, src in enumerate(sources):
            rc = client.fl_make_sockaddr(family, <const char *>src, 0, &self.sources[i])
            if rc < 0 or len(src) != len(address):
                raise ValueError("source addresses must be of the target's family")
            self.source_lens[i] = rc
        self.nsources = len(sources)
        self.next_source = first_conn
    self.req_len = len(request)
    self.reqbuf = <char *>malloc(self.req_len * pipeline)
    if self.reqbuf == NULL:
        raise MemoryError()
    for i in range(pipeline):
        memcpy(self.reqbuf + i * self.req_len, <const char *>request, self.req_len)
    self.conns = <fb_conn *>calloc(connections, sizeof(fb_conn))
    if self.conns == NULL:
        raise MemoryError()
    self.nconns = connections
    for i in range(connections):
        self.conns[i].fd = -1
        self.conns[i].index = i
        self.conns[i].gindex = first_conn + i
    self.active = connections
    self.next_due = INT64_MAX
    return 0
