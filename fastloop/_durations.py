"""Request-duration histograms for --metrics, per status class, as prometheus_client's
Histogram would keep them.

RequestDurations is an observer of fastloop._observe.ObservedApp: the time from a Python
handler's call to its answer handed to the connection (what gunicorn's statsd
`gunicorn.request.duration` times), in seconds, counted in the bucket of the first bound at
or above it. Its counters() go into Server.stats()["request_durations"] as

    {"2xx": {"buckets": {"0.005": n, ..., "+Inf": n}, "sum": seconds, "count": n}, ...}

with each bucket counting its own observations (not cumulative): so the counters of several
processes, and of workers that are gone, add up key by key (fastloop.server.merge), and
fastloop.metrics renders the cumulative `le` series from them.

Answers the core gives without Python (static routes, rejected requests) take no handler
time and are not observed; fastloop_requests_total counts them.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any, Dict, List

__all__ = ["BUCKETS", "RequestDurations", "bucket_labels"]

# prometheus_client's default buckets (5 ms .. 10 s), with 0.5 ms, 1 ms and 2.5 ms before
# them: a handler answered in well under 5 ms is the common case here.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
           1.0, 2.5, 5.0, 7.5, 10.0)


def bucket_labels() -> List[str]:
    """The `le` label of each bucket, in order, "+Inf" last."""
    return [repr(b) for b in BUCKETS] + ["+Inf"]


_LABELS = bucket_labels()


class RequestDurations:
    """Thread-safe: handler threads observe at once (and threads run in parallel on a
    free-threaded CPython), so each observation takes a lock, held for a few additions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, List[int]] = {}
        self._sums: Dict[str, float] = {}

    def __call__(self, request: Any, status: int, sent: int, seconds: float) -> None:
        self.observe(status, seconds)

    def observe(self, status: int, seconds: float) -> None:
        cls = f"{status // 100}xx"
        i = bisect.bisect_left(BUCKETS, seconds)  # the first bound >= seconds; len: +Inf
        with self._lock:
            counts = self._counts.get(cls)
            if counts is None:
                counts = self._counts[cls] = [0] * len(_LABELS)
                self._sums[cls] = 0.0
            counts[i] += 1
            self._sums[cls] += seconds

    def counters(self) -> dict:
        with self._lock:
            return {"request_durations": {
                cls: {"buckets": dict(zip(_LABELS, counts)), "sum": self._sums[cls],
                      "count": sum(counts)}
                for cls, counts in self._counts.items()}}
