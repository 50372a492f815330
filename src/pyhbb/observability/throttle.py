"""Keep warnings about floods readable: log the 1st, 2nd, 4th, 8th ... occurrence."""

from __future__ import annotations


def worth_logging(count: int) -> bool:
    """True when ``count`` (occurrences so far, from 1) is a power of two."""
    return count > 0 and count & (count - 1) == 0


class LogThrottle:
    """The same scheme per kind of line within a window (a minute by default): a line
    that happens a few times a minute is always logged, a flood gives a handful of lines
    a minute, each saying how many happened so far. Time is injected."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._counts: dict[str, int] = {}
        self._since = float("-inf")
        self._latest = float("-inf")

    def count(self, kind: str, now: float | None = None) -> int:
        """Count one ``kind`` line; returns its count in this window when it is worth
        logging, else 0. ``kind`` must come from a fixed set (it keys a dict). Without
        ``now``, the latest time given is used."""
        if now is None or now < self._latest:
            now = self._latest
        self._latest = now
        if now - self._since >= self.window:
            self._counts.clear()
            self._since = now
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        return n if worth_logging(n) else 0
