"""IDs an admin disabled in the web console: hbbs treats them as offline peers.

The database marks a disabled device with ``peer.status = 0`` (a column the official
server leaves unused, docs/protocol.md §10.4). hbbs reads those IDs at start and the web
console tells it of every change through the loopback console (``disable-peer``,
``enable-peer``); punch requests, relay requests and online queries for them are then
answered as for an offline peer (docs/deviations.md §3.8).

A set of its own rather than a flag in the compact peer records: a disabled ID must stay
disabled while its record is evicted from memory or read back, and the records stay as
small as they are. Bounded at :data:`MAX_DISABLED` IDs; when full, a further ID is
*refused* (the console says so) rather than another made reachable in its place: an admin
who disabled a device long ago must not find it reachable again without being told.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from itertools import islice

MAX_DISABLED = 100_000
"""At most this many IDs are enforced (~15 MB at worst: IDs of up to 100 bytes)."""


class Change(Enum):
    """What a disable or enable from the console did."""

    DONE = "done"
    TABLE_FULL = "table_full"
    CLUSTER_MODE = "cluster_mode"
    """Not enforced in cluster mode: other nodes would still connect to the device."""
    BAD_ID = "bad_id"


class DisabledPeers:
    """The disabled IDs, in the order they were disabled (console listings page by it)."""

    def __init__(self, limit: int = MAX_DISABLED) -> None:
        self.limit = limit
        self._ids: dict[str, None] = {}  # a dict keeps insertion order, unlike a set

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, peer_id: str) -> bool:
        """Disable ``peer_id``; False (and nothing changed) when the set is full."""
        if peer_id in self._ids:
            return True
        if len(self._ids) >= self.limit:
            return False
        self._ids[peer_id] = None
        return True

    def add_all(self, peer_ids: Iterable[str]) -> int:
        """Disable each of ``peer_ids`` while there is room; returns how many are in."""
        added = 0
        for peer_id in peer_ids:
            if not self.add(peer_id):
                break
            added += 1
        return added

    def discard(self, peer_id: str) -> bool:
        """Enable ``peer_id`` again; False when it was not disabled."""
        if peer_id not in self._ids:
            return False
        del self._ids[peer_id]
        return True

    def rename(self, old_id: str, new_id: str) -> None:
        """The row of ``old_id`` now carries ``new_id`` (its status with it)."""
        if self.discard(old_id):
            self._ids[new_id] = None  # one out, one in: the bound holds

    def page(self, start: int, count: int) -> list[str]:
        """Up to ``count`` IDs from position ``start`` (console only: O(start))."""
        return list(islice(self._ids, start, start + count))
