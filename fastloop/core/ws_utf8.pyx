# UTF-8 validation (RFC 3629) without the GIL, incremental, for text messages and close reasons.

from libc.string cimport memcpy


# Each byte falls in one of 12 classes; the state says what the current character still needs.
# A text message is valid when every byte is accepted and the last one leaves state 0, so the
# validator can run over pieces and fail at the first byte that no valid text could contain.
cdef enum:
    FL_UTF8_ACCEPT = 0
    FL_UTF8_REJECT = 8
    FL_UTF8_CLASSES = 12

cdef uint8_t fl_utf8_class[256]
cdef uint8_t fl_utf8_next[9 * FL_UTF8_CLASSES]


cdef void fl_utf8_init() noexcept:
    # Classes: 0 ASCII, 1 80-8F, 2 90-9F, 3 A0-BF (continuations split by the ranges that
    # E0/ED/F0/F4 allow), 4 never valid (C0 C1 F5-FF), 5 C2-DF, 6 E0, 7 E1-EC EE EF, 8 ED,
    # 9 F0, 10 F1-F3, 11 F4.
    cdef int c, s
    for c in range(256):
        if c < 0x80:
            fl_utf8_class[c] = 0
        elif c < 0x90:
            fl_utf8_class[c] = 1
        elif c < 0xA0:
            fl_utf8_class[c] = 2
        elif c < 0xC0:
            fl_utf8_class[c] = 3
        elif c < 0xC2 or c > 0xF4:
            fl_utf8_class[c] = 4
        elif c < 0xE0:
            fl_utf8_class[c] = 5
        elif c == 0xE0:
            fl_utf8_class[c] = 6
        elif c == 0xED:
            fl_utf8_class[c] = 8
        elif c < 0xF0:
            fl_utf8_class[c] = 7
        elif c == 0xF0:
            fl_utf8_class[c] = 9
        elif c < 0xF4:
            fl_utf8_class[c] = 10
        else:
            fl_utf8_class[c] = 11
    # States: 0 boundary, 1/2/3 need that many continuations (80-BF), 4 after E0 (A0-BF, no
    # overlong), 5 after ED (80-9F, no surrogate), 6 after F0 (90-BF, no overlong), 7 after F4
    # (80-8F, nothing above U+10FFFF), 8 rejected (absorbing).
    for s in range(9 * FL_UTF8_CLASSES):
        fl_utf8_next[s] = FL_UTF8_REJECT
    cdef int state, nxt
    for state, classes, nxt in (
        # state, the byte classes it accepts, the state each leads to
        (0, (0,), 0), (0, (5,), 1), (0, (6,), 4), (0, (7,), 2),
        (0, (8,), 5), (0, (9,), 6), (0, (10,), 3), (0, (11,), 7),
        (1, (1, 2, 3), 0), (2, (1, 2, 3), 1), (3, (1, 2, 3), 2),
        (4, (3,), 1), (5, (1, 2), 1), (6, (2, 3), 2), (7, (1,), 2),
    ):
        for c in classes:
            fl_utf8_next[state * FL_UTF8_CLASSES + c] = nxt


fl_utf8_init()


cdef Py_ssize_t fl_utf8_feed(uint8_t *state, const uint8_t *s, size_t n) noexcept nogil:
    """Runs the validator over s[0:n) from *state. Returns -1 when every byte is acceptable
    (*state updated; 0 means s ended on a character boundary), else the index of the first
    byte that cannot be part of valid UTF-8 (*state is then FL_UTF8_REJECT)."""
    cdef uint8_t st = state[0]
    cdef size_t i = 0
    cdef uint64_t w
    if st == FL_UTF8_REJECT:
        return 0
    while i < n:
        if st == FL_UTF8_ACCEPT:
            # Text is mostly ASCII: skip 8 bytes at a time while no byte has its top bit set.
            while i + 8 <= n:
                memcpy(&w, s + i, 8)
                if w & 0x8080808080808080ULL:
                    break
                i += 8
            if i == n:
                break
        st = fl_utf8_next[st * FL_UTF8_CLASSES + fl_utf8_class[s[i]]]
        if st == FL_UTF8_REJECT:
            state[0] = st
            return <Py_ssize_t>i
        i += 1
    state[0] = st
    return -1
