"""Heartbeats that wait for the warm start's row instead of reading their own.

While the warm start reads the peer table into memory (adapters/warm_start.py), a returning
client's heartbeat often comes before its row. Reading that one row (the take-back,
registration.py) costs a look-up by id on the same reader thread that is scanning the
table, and the loop's time to resume the waiter: measured in the 1M-peer restart storm,
take-back reads and the scan together held the loop back from answering for about half of
the warm start. Since the scan brings every row anyway, the heartbeat is parked here and
decided when its row is entered, for a dict look-up per row.

One waiter per id (the first; a later heartbeat for the same id, a resend or a forgery, is
not answered and comes again), bounded in number; each held as one ``bytes``: the serial
(4 bytes) and the address key (``peer_registry.addr_key``). When the table is full,
heartbeats take the take-back path as before; when the warm start ends, the waiters left
(ids not in the table, or beyond its limit) are forgotten: their clients resend within
3 s and are then taken back.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_WARM_WAITERS = 200_000  # ~150 bytes each while a warm start runs: ~30 MB at most


class WarmWaiters:
    """Parked heartbeats by peer id, while a warm start runs."""

    def __init__(self, limit: int = MAX_WARM_WAITERS) -> None:
        self.limit = limit
        self._waiting: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def park(self, peer_id: str, serial: int, key: bytes) -> bool:
        """Park the heartbeat of ``peer_id`` from the address ``key``; False when the table
        is full (take it back instead). An id already waiting keeps its first waiter."""
        waiting = self._waiting
        if peer_id in waiting:
            return True
        if len(waiting) >= self.limit:
            return False
        waiting[peer_id] = (serial & 0xFFFFFFFF).to_bytes(4, "big") + key
        return True

    def claim(self, ids: Iterable[str]) -> list[tuple[str, int, bytes]]:
        """The waiters among ``ids`` (just entered), removed: ``(id, serial, key)``."""
        waiting = self._waiting
        if not waiting:
            return []
        found = []
        for peer_id in ids:
            entry = waiting.pop(peer_id, None)
            if entry is not None:
                serial = int.from_bytes(entry[:4], "big")
                if serial >= 1 << 31:  # the protobuf field is an int32
                    serial -= 1 << 32
                found.append((peer_id, serial, entry[4:]))
        return found
