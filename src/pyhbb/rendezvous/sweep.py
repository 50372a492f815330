"""Visiting the keys of a large table a slice at a time, so housekeeping never stalls the
event loop: a full pass over a million records takes a few hundred milliseconds, and even
copying a million keys into a list takes 10-30 ms."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


CHUNK = 1024


class KeyRing(Generic[K]):
    """Every key of a table in a ring (8 bytes per key), told of each insertion and
    removal by the table's owner. :meth:`take` pops the next keys; the owner hands back
    with :meth:`keep` those that stay, so each pass visits every key once, in O(budget)
    per step and without a snapshot of the table.

    A key removed by the owner leaves its entry behind as an *orphan*, counted per key and
    skipped when it comes up (the oldest entries of a key come up first, so a key removed
    and added again keeps its newest entry).

    The keys sit in tuples of :data:`CHUNK`: the cyclic GC stops looking into a tuple of
    strings, so a full collection costs nothing per key (a deque of a million keys cost it
    ~18 ms each time).
    """

    def __init__(self) -> None:
        self._chunks: deque[tuple[K, ...]] = deque()
        self._tail: list[K] = []  # the newest keys, not yet a chunk
        self._head: tuple[K, ...] = ()  # the chunk being taken from
        self._pos = 0
        self._size = 0
        self._orphans: dict[K, int] = {}
        self._left = 0  # entries left to visit in the current pass
        self.passes = 0
        """Completed passes over the whole ring."""
        self._reported = 0

    def __len__(self) -> int:
        return self._size

    def added(self, key: K) -> None:
        """``key`` was inserted into the table (it is visited from the next pass on)."""
        tail = self._tail
        tail.append(key)
        self._size += 1
        if len(tail) >= CHUNK:
            self._chunks.append(tuple(tail))
            tail.clear()

    def extend(self, keys: list[K]) -> None:
        """:meth:`added` for each of ``keys`` in turn, in one call (a warm start adds a
        million)."""
        tail = self._tail
        tail.extend(keys)
        self._size += len(keys)
        while len(tail) >= CHUNK:
            self._chunks.append(tuple(tail[:CHUNK]))
            del tail[:CHUNK]

    keep = added
    """``key``, just taken, stays in the table: visit it again next pass."""

    def removed(self, key: K) -> None:
        """``key`` was removed from the table by someone other than the sweep."""
        self._orphans[key] = self._orphans.get(key, 0) + 1

    def _pop(self) -> K:
        if self._pos >= len(self._head):
            if self._chunks:
                self._head = self._chunks.popleft()
            else:
                self._head = tuple(self._tail)
                self._tail.clear()
            self._pos = 0
        key = self._head[self._pos]
        self._pos += 1
        self._size -= 1
        return key

    def take(self, budget: int) -> Iterator[K]:
        """The next keys of the pass, at most ``budget`` entries popped (a step ends with
        its pass); pass each key that stays in the table to :meth:`keep`, before or after
        the next one is taken."""
        orphans = self._orphans
        if self._left <= 0:
            self._left = self._size
        for _ in range(min(budget, self._left)):
            key = self._pop()
            self._left -= 1
            if self._left == 0:
                self.passes += 1
            stale = orphans.get(key)
            if stale:
                if stale == 1:
                    del orphans[key]
                else:
                    orphans[key] = stale - 1
                continue
            yield key

    def pass_done(self) -> bool:
        """True once after each completed pass."""
        if self._reported == self.passes:
            return False
        self._reported = self.passes
        return True
