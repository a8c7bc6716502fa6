# The buffer pool (bufpool.pyx): spare blocks a worker reuses for connection buffers.

cdef enum:
    FL_BUF_SIZE = 16384           # pooled buffer size; larger requests get a malloc'd one
    FL_POOL_MAX = 256             # spare buffers a worker keeps

ctypedef struct fl_bufpool:
    char **bufs                   # FL_POOL_MAX slots, allocated at the first put; NULL before
    int n                         # spare blocks in bufs[0:n], the last put on top
