# The latency histogram (layout and precision in hist.pxd).

from libc.math cimport ceil
from libc.stdint cimport UINT64_MAX, int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from fastloop.loadgen cimport client


cdef inline int fb_hist_index(uint64_t v) noexcept nogil:
    """The bucket of v: exact below FB_HIST_LINEAR, then FB_HIST_HALF buckets per octave."""
    if v < FB_HIST_LINEAR:
        return <int>v
    cdef int k = client.fl_msb64(v) - FB_HIST_SUB_BITS  # >= 1 here
    if k > FB_HIST_OCTAVES:
        return FB_HIST_LEN - 1
    return FB_HIST_LINEAR + (k - 1) * FB_HIST_HALF + <int>((v >> k) - FB_HIST_HALF)


cdef inline uint64_t fb_hist_high(int i) noexcept nogil:
    """The largest value bucket i holds (what a percentile reports, as HdrHistogram does)."""
    if i < FB_HIST_LINEAR:
        return <uint64_t>i
    cdef int j = i - FB_HIST_LINEAR
    cdef int k = j // FB_HIST_HALF + 1
    cdef uint64_t low = (<uint64_t>(FB_HIST_HALF + j % FB_HIST_HALF)) << k
    return low + ((<uint64_t>1 << k) - 1)


cdef void fb_hist_reset(fb_hist *h) noexcept nogil:
    memset(h, 0, sizeof(fb_hist))
    h.min = UINT64_MAX


cdef void fb_hist_record(fb_hist *h, int64_t ns) noexcept nogil:
    cdef uint64_t v = <uint64_t>ns if ns > 0 else 0
    h.counts[fb_hist_index(v)] += 1
    h.total += 1
    h.sum += v
    if v < h.min:
        h.min = v
    if v > h.max:
        h.max = v


cdef uint64_t fb_hist_percentile(const fb_hist *h, double p) noexcept nogil:
    """The value at or below which p percent of the recorded values lie (0 when empty)."""
    if h.total == 0:
        return 0
    cdef uint64_t want = <uint64_t>ceil(p / 100.0 * <double>h.total)
    if want < 1:
        want = 1
    if want > h.total:
        want = h.total
    cdef uint64_t seen = 0, v
    cdef int i
    for i in range(FB_HIST_LEN):
        seen += h.counts[i]
        if seen >= want:
            v = fb_hist_high(i)
            # Never beyond the extremes actually seen: p100 is the exact max.
            return h.max if v > h.max else (h.min if v < h.min else v)
    return h.max


cdef class LatencyHistogram:
    """Latencies in ns, with three significant digits (see hist.pxd). Filled by the client
    loops without the GIL; merged and read from Python once a run is over."""

    def __cinit__(self):
        self.h = <fb_hist *>malloc(sizeof(fb_hist))
        if self.h == NULL:
            raise MemoryError()
        fb_hist_reset(self.h)

    def __dealloc__(self):
        free(self.h)

    cdef void merge_from(self, const fb_hist *o) noexcept nogil:
        cdef int i
        for i in range(FB_HIST_LEN):
            self.h.counts[i] += o.counts[i]
        self.h.total += o.total
        self.h.sum += o.sum
        if o.min < self.h.min:
            self.h.min = o.min
        if o.max > self.h.max:
            self.h.max = o.max

    def record(self, int64_t ns):
        fb_hist_record(self.h, ns)

    def merge(self, LatencyHistogram other not None):
        self.merge_from(other.h)

    def percentile(self, double p):
        """ns at percentile p (0-100]; 0 when nothing was recorded."""
        if not 0.0 <= p <= 100.0:
            raise ValueError("percentile must be within 0..100")
        return fb_hist_percentile(self.h, p)

    @property
    def count(self):
        return self.h.total

    @property
    def min(self):
        return self.h.min if self.h.total else 0

    @property
    def max(self):
        return self.h.max

    @property
    def mean(self):
        return self.h.sum / self.h.total if self.h.total else 0.0
