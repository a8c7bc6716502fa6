# The latency histogram (HdrHistogram-style), filled by the client loops without the GIL:
# values below FB_HIST_LINEAR ns are counted exactly; above, each power of two is cut into
# FB_HIST_HALF equal buckets, so a bucket is never wider than 1/1024 of its values (three
# significant digits). Values past the last octave (~2200 s) land in the last bucket.

from libc.stdint cimport int64_t, uint64_t


cdef enum:
    FB_HIST_SUB_BITS = 10
    FB_HIST_HALF = 1024           # 1 << FB_HIST_SUB_BITS
    FB_HIST_LINEAR = 2048         # 2 << FB_HIST_SUB_BITS
    FB_HIST_OCTAVES = 30
    FB_HIST_LEN = 32768           # FB_HIST_LINEAR + FB_HIST_OCTAVES * FB_HIST_HALF

ctypedef struct fb_hist:
    uint64_t total
    uint64_t sum                  # ns, for the mean
    uint64_t min
    uint64_t max
    uint64_t counts[FB_HIST_LEN]

cdef void fb_hist_reset(fb_hist *h) noexcept nogil
cdef void fb_hist_record(fb_hist *h, int64_t ns) noexcept nogil
cdef uint64_t fb_hist_percentile(const fb_hist *h, double p) noexcept nogil


cdef class LatencyHistogram:
    cdef fb_hist *h
    cdef void merge_from(self, const fb_hist *other) noexcept nogil
