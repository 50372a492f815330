"""A table that network input can fill: bounded, and O(1) per packet even when full.

Keys sit in a dict (for look-ups) and in a ring of keys (a deque, 8 bytes per key). When
the table is full, a new key evicts the key at the front of the ring, in O(1): no scan on
the packet path however the table was filled. The once-a-second housekeeping timer walks
the ring from the front with a bounded budget: stale entries are dropped, live ones go
to the back (a clock sweep), so the front holds the entries least recently swept or
inserted. Removing an arbitrary key (the console) rebuilds the ring: O(n), admin only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, MutableMapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

SHRINK_AT = 8  # rebuild the dict once it holds less than 1/8 of its peak


class BoundedTable(MutableMapping[K, V]):
    """At most ``cap`` entries; inserting into a full table evicts the oldest-swept one."""

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("a bounded table needs room for at least one entry")
        self.cap = cap
        self._map: dict[K, V] = {}
        self._ring: deque[K] = deque()
        self.evicted = 0
        """Entries pushed out by new keys while full (a flood's footprint)."""
        self._peak = 0
        self.get = self._map.get  # type: ignore[method-assign]  # the dict's own: hot path

    # -- MutableMapping --------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        return self._map[key]

    def __setitem__(self, key: K, value: V) -> None:
        table = self._map
        if key not in table:
            if len(table) >= self.cap:
                del table[self._ring.popleft()]
                self.evicted += 1
            self._ring.append(key)
            if len(table) >= self._peak:
                self._peak = len(table) + 1
        table[key] = value

    def __delitem__(self, key: K) -> None:
        del self._map[key]
        self._ring = deque(self._map)

    def __iter__(self) -> Iterator[K]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def clear(self) -> None:
        self._map.clear()
        self._ring.clear()

    # -- housekeeping ----------------------------------------------------------------------

    def sweep(self, budget: int, stale: Callable[[V], bool]) -> int:
        """Examine at most ``budget`` entries from the front of the ring: drop the stale
        ones, requeue the others at the back. Returns how many were dropped."""
        table, ring = self._map, self._ring
        removed = 0
        for _ in range(min(budget, len(ring))):
            key = ring.popleft()
            if stale(table[key]):
                del table[key]
                removed += 1
            else:
                ring.append(key)
        if removed and len(table) * SHRINK_AT < self._peak:
            self._shrink()
        return removed

    def _shrink(self) -> None:
        """A dict never gives back the room it grew to: once the table is down to a small
        part of its peak (a flood, a burst of registrations is over), copy it into a
        right-sized one, in O(entries left)."""
        self._map = dict(self._map)
        self.get = self._map.get  # type: ignore[method-assign]
        self._peak = len(self._map)

    def remove_where(self, stale: Callable[[V], bool]) -> int:
        """Drop every stale entry at once (console commands: O(n))."""
        doomed = [k for k, v in self._map.items() if stale(v)]
        for key in doomed:
            del self._map[key]
        if doomed:
            self._ring = deque(self._map)
        return len(doomed)
