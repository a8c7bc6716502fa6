/* status.h - every status the core answers by itself, without a handler, in one list.
 *
 * One line per status: its code and its text, which the DEBUG log line of a rejection and a
 * streaming body's BodyError carry. Everything else comes from this list: FL_NSTATUS (the size
 * of the per-status counters), fl_statuses[] and fl_status_texts[] (read by response.pyx to
 * prebuild each answer), and fl_status_index() (a status to its counter and prebuilt answer).
 *
 * The last line is the fallback: a status that is not in the list is a bug in the core (a
 * parser result nobody added here), so it is answered 500 and counted as a 500, never as some
 * other status. tests/test_status_table.py checks that every status the core's sources can
 * produce has its line.
 */
#ifndef FL_STATUS_H
#define FL_STATUS_H

#define FL_STATUS_LIST(X)                                                \
    X(400, "malformed request (head or chunked body)")                   \
    X(408, "request timeout")                                            \
    X(413, "request body too large")                                     \
    X(414, "request target too long")                                    \
    X(431, "request header or trailer fields too large")                 \
    X(501, "transfer coding not implemented")                            \
    X(505, "HTTP version not supported")                                 \
    X(426, "WebSocket version other than 13")                            \
    X(503, "over the connection limit")                                  \
    X(500, "a status missing from the core's status table")

#define FL_STATUS_SLOT(code, text) FL_STATUS_SLOT_##code,
enum { FL_STATUS_LIST(FL_STATUS_SLOT) FL_NSTATUS };
#undef FL_STATUS_SLOT

#define FL_STATUS_CODE(code, text) code,
static const int fl_statuses[FL_NSTATUS] = { FL_STATUS_LIST(FL_STATUS_CODE) };
#undef FL_STATUS_CODE

#define FL_STATUS_TEXT(code, text) text,
static const char *const fl_status_texts[FL_NSTATUS] = { FL_STATUS_LIST(FL_STATUS_TEXT) };
#undef FL_STATUS_TEXT

/* The slot of status in the arrays above and in the counters; FL_STATUS_SLOT_500 for a status
 * missing from the list. */
static inline int fl_status_index(int status)
{
    switch (status) {
#define FL_STATUS_CASE(code, text) case code: return FL_STATUS_SLOT_##code;
    FL_STATUS_LIST(FL_STATUS_CASE)
#undef FL_STATUS_CASE
    default: return FL_STATUS_SLOT_500;
    }
}

#endif
