"""A bounded table whose tuples of numbers are stored packed, so the GC never walks it.

A dict whose values are all strings, bytes or numbers is one the cyclic GC stops tracking;
a single fresh tuple put into it makes it tracked again (a new tuple is tracked until a
collection has looked at it), and then every full collection walks every entry: ~33 ms
for 250,000 entries on this machine, ~0 once the values are bytes (bench/RESULTS.md,
"housekeeping stalls"). A table written on every registration is never without a fresh
tuple, so its values are kept as ``struct``-packed bytes and unpacked on reading, which
costs ~0.2 µs a read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from pyhbb.rendezvous.bounded_table import BoundedTable

V = TypeVar("V", bound=tuple[Any, ...])
D = TypeVar("D")


class PackedTable(Generic[V]):
    """``str`` → a tuple of numbers in the ``struct`` format ``fmt``, at most ``cap``
    entries; the parts of :class:`BoundedTable` its users call, values as tuples."""

    def __init__(self, cap: int, fmt: str) -> None:
        self._table: BoundedTable[str, bytes] = BoundedTable(cap)
        layout = struct.Struct(fmt)
        self._pack = layout.pack
        self._unpack = layout.unpack

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def __getitem__(self, key: str) -> V:
        return cast(V, self._unpack(self._table[key]))

    def __setitem__(self, key: str, value: V) -> None:
        self._table[key] = self._pack(*value)

    def get(self, key: str, default: D) -> V | D:
        packed = self._table.get(key)
        if packed is None:
            return default
        return cast(V, self._unpack(packed))

    def sweep(self, budget: int, stale: Callable[[V], bool]) -> int:
        """:meth:`BoundedTable.sweep`, ``stale`` given the unpacked value."""
        unpack = self._unpack
        return self._table.sweep(budget, lambda packed: stale(cast(V, unpack(packed))))

    def clear(self) -> None:
        self._table.clear()

    @property
    def evicted(self) -> int:
        return self._table.evicted
