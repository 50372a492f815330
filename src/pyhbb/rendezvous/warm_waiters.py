"""Heartbeats that wait for the warm start's row because no read could be spared for them.

After a restart, a returning client's heartbeat often comes before the warm start
(adapters/warm_start.py) has read its row; it is then taken back by a read of its own
(registration.py). In the 1M-peer restart storm those reads hit their limits in the first
seconds (7,500 pending, the read budget), and such a heartbeat went unanswered: the client
resent it 3 s later. Parked here instead, it is answered as soon as the scan enters its
row, for a dict look-up per row and no read.

Only heartbeats that would get no answer are parked: one with a read to spare is taken
back at once as before (an id the database lacks must hear ``request_pk`` promptly, not at
the end of the scan). One waiter per id (the first; a later heartbeat for it is not
answered, or is taken back if a read is free, which forgets the waiter); bounded in
number; each held as one ``bytes``: the serial (4 bytes) and the address key
(``peer_registry.addr_key``). When the warm start ends, the waiters left (ids not in the
table, or beyond its limit) are forgotten: their clients resend within 3 s.
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

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._waiting

    def park(self, peer_id: str, serial: int, key: bytes) -> bool:
        """Park the heartbeat of ``peer_id`` from the address ``key``; False when the table
        is full. An id already waiting keeps its first waiter."""
        waiting = self._waiting
        if peer_id in waiting:
            return True
        if len(waiting) >= self.limit:
            return False
        waiting[peer_id] = (serial & 0xFFFFFFFF).to_bytes(4, "big") + key
        return True

    def forget(self, peer_id: str) -> None:
        if self._waiting:
            self._waiting.pop(peer_id, None)

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
