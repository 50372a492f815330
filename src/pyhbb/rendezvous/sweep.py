"""Expiring entries of large tables a slice at a time, so housekeeping never stalls the
event loop (a full pass over a million records takes a few hundred milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Sweeper(Generic[K, V]):
    """Walks ``table`` in slices of at most ``budget`` keys per :meth:`step`."""

    def __init__(self, table: dict[K, V]) -> None:
        self._table = table
        self._keys: list[K] = []
        self._pos = 0
        self.passes = 0
        """Completed passes over the whole table."""

    def step(self, budget: int, stale: Callable[[V], bool]) -> int:
        """Delete the stale entries among the next ``budget`` keys; returns how many."""
        if self._pos >= len(self._keys):
            self._keys = list(self._table)  # a new pass over a snapshot of the keys
            self._pos = 0
        end = min(self._pos + budget, len(self._keys))
        table = self._table
        removed = 0
        for key in self._keys[self._pos : end]:
            value = table.get(key)
            if value is not None and stale(value):
                del table[key]
                removed += 1
        self._pos = end
        if end >= len(self._keys):
            self._keys = []  # release the snapshot between passes
            self.passes += 1
        return removed
