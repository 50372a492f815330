"""Event-loop lag: how late a periodic callback runs (issue 11 item 5's measure).

A callback is scheduled every :data:`INTERVAL` seconds; each time it runs it records how
long after its due time it ran. Anything that holds the loop (a slow callback, a full
garbage-collection pass, a blocking call) delays it by as much, so the histogram shows
the stalls the clients saw. A stall that begins between two due times is seen from the
next one on: a stall of S seconds reads at least S - INTERVAL. At 5 ms, a 15 ms stall
reads 10 ms or more, and "no stall over 10 ms" can be told from the metric (at the
25 ms used before, a 34 ms stall could read 9 ms). The timer costs ~200 short callbacks
a second, a few tenths of a percent of a core.

A stall over :data:`STALL_WARNING` is also logged (throttled), so an operator without a
metrics scraper sees it.

The monitor's state is plain floats written on the loop; another thread (the metrics
endpoint) reads them to tell a wedged loop while the loop itself cannot run anything:
:meth:`LoopLag.overdue` grows for as long as the callback is late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pyhbb.observability.histogram import Histogram
from pyhbb.observability.throttle import LogThrottle

log = logging.getLogger("pyhbb.loop")

INTERVAL = 0.005
STALL_WARNING = 0.1  # a tenth of a second without answers: clients notice
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
        self._throttle = LogThrottle()

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
        lag = self.record(now)
        if lag > STALL_WARNING and (n := self._throttle.count("stall", now)):
            log.warning(
                "event loop stalled for %.0f ms: nothing was answered meanwhile "
                "(%d stalls over %.0f ms this minute; pyhbb_event_loop_lag_seconds)",
                lag * 1000,
                n,
                STALL_WARNING * 1000,
            )
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
