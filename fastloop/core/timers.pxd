# A worker's timers (timers.pyx). The kinds (FL_TIMER_*) are in conn.pxd, with the connection.

ctypedef struct fl_timer_list:
    fl_conn *head                 # the earliest deadline
    fl_conn *tail
    int64_t duration_ms

ctypedef struct fl_timers:
    fl_timer_list lists[FL_NTIMERS]   # one per kind; lists[FL_TIMER_NONE] stays empty
