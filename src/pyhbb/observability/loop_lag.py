"""Event-loop lag: how late a periodic callback runs (issue 11 item 5's measure).

A callback is scheduled every :data:`INTERVAL` seconds; each time it runs it records how
long after its due time it ran. Anything that holds the loop (a slow callback, a full
garbage-collection pass, a blocking call) delays it by as much, so the histogram shows
the stalls the clients saw. A stall shorter than the interval is seen when it covers a
due time, so at 25 ms a 10 ms stall is caught two times out of five and every longer
one always.

The monitor's state is plain floats written on the loop; another thread (the metrics
endpoint) reads them to tell a wedged loop while the loop itself cannot run anything:
:meth:`LoopLag.overdue` grows for as long as the callback is late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pyhbb.observability.histogram import Histogram

INTERVAL = 0.025
WINDOW = 10.0  # the "recent worst" gauge covers at least this many seconds
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopLag:
    """Measures the lateness of a timer on one event loop."""

    def __init__(
        self,
        interval: float = INTERVAL,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.window = window
        self.clock = clock
        self.histogram = Histogram(LAG_BUCKETS)
        now = clock()
        self.last_tick = now
        """When the callback last ran (``clock`` seconds)."""
        self._due = now + interval
        # worst lag of the current and of the previous window: their max covers the
        # last ``window`` to ``2 * window`` seconds without keeping every sample
        self._window_start = now
        self._worst = 0.0
        self._worst_before = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.last_tick = self.clock()
        self._due = self.last_tick + self.interval
        self._handle = loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self.clock()
        self.record(now)
        assert self._loop is not None
        self._handle = self._loop.call_later(self.interval, self._tick)

    def record(self, now: float) -> float:
        """The callback ran at ``now``: record its lateness and set the next due time."""
        lag = max(0.0, now - self._due)
        self.histogram.observe(lag)
        if now - self._window_start >= self.window:
            self._worst_before, self._worst = self._worst, 0.0
            self._window_start = now
        self._worst = max(self._worst, lag)
        self.last_tick = now
        self._due = now + self.interval
        return lag

    def overdue(self, now: float) -> float:
        """How late the pending callback already is: the length of a stall in progress."""
        return max(0.0, now - self._due)

    def worst_recent(self, now: float) -> float:
        """The worst lag of the last ``window`` seconds or more, a stall in progress
        included."""
        return max(self._worst, self._worst_before, self.overdue(now))
