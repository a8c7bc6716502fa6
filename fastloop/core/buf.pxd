# buf.h declared once (the contract is at the top of buf.h). cimported as a namespace:
# `from fastloop.core cimport buf`.

cdef extern from "buf.h" nogil:
    size_t FL_BUF_MIN

    ctypedef struct fl_buf:
        char *p
        size_t cap
        size_t start
        size_t end

    size_t fl_buf_len(const fl_buf *b)
    char *fl_buf_head(const fl_buf *b)
    char *fl_buf_tail(const fl_buf *b)
    size_t fl_buf_room(const fl_buf *b)
    int fl_buf_reserve(fl_buf *b, size_t need)
    size_t fl_buf_plan(fl_buf *b, size_t need, size_t min)
    char *fl_buf_move(fl_buf *b, char *p, size_t cap)
    void fl_buf_put(fl_buf *b, const void *p, size_t n)
    void fl_buf_consume(fl_buf *b, size_t n)
    void fl_buf_free(fl_buf *b)
