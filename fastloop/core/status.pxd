# status.h declared once: the one list of the statuses the core answers by itself.

cdef extern from "status.h" nogil:
    enum:
        FL_NSTATUS
        FL_STATUS_SLOT_500
    const int fl_statuses[]
    const char *fl_status_texts[]
    int fl_status_index(int status)
