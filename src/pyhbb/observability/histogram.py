"""Histogram bucket counters kept as plain numbers, exported at scrape time.

The code that measures (the event loop's lag timer, a database job's completion, an API
request) calls :meth:`Histogram.observe`: a bisect and three additions, no lock and no
metrics-library call. The exporter turns a :meth:`Histogram.snapshot` into a Prometheus
histogram family. Observe from one thread only (the event loop's).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

# Seconds, from a millisecond stall to a wedged loop or a database lock wait.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative counts per upper bound (the last bound is +Inf), and the sum."""

    buckets: list[tuple[float, int]]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1]


class Histogram:
    """Counts of observations per bucket (``value <= bound``), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and increasing")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> HistogramSnapshot:
        """Cumulative buckets. Safe to call from another thread: the counts are copied
        in one step, and the count is derived from that copy, so it always matches the
        buckets (the sum may be a few observations apart, which Prometheus tolerates)."""
        counts = list(self.counts)
        total = 0
        buckets: list[tuple[float, int]] = []
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            total += n
            buckets.append((bound, total))
        return HistogramSnapshot(buckets, self.sum)
