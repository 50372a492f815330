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
(``peer_registry.addr_key``), in :data:`SHARDS` small dicts (rendezvous/shards.py: one dict
of 200,000 would copy itself in one step as it grows). When the warm start ends, the
waiters left (ids not in the table, or beyond its limit) are forgotten: their clients
resend within 3 s.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyhbb.rendezvous.shards import SHARD_MASK, SHARDS

MAX_WARM_WAITERS = 200_000  # ~150 bytes each while a warm start runs: ~30 MB at most


class WarmWaiters:
    """Parked heartbeats by peer id, while a warm start runs."""

    def __init__(self, limit: int = MAX_WARM_WAITERS) -> None:
        self.limit = limit
        self._shards: list[dict[str, bytes]] = [{} for _ in range(SHARDS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._shards[hash(peer_id) & SHARD_MASK]

    def park(self, peer_id: str, serial: int, key: bytes) -> bool:
        """Park the heartbeat of ``peer_id`` from the address ``key``; False when the table
        is full. An id already waiting keeps its first waiter."""
        waiting = self._shards[hash(peer_id) & SHARD_MASK]
        if peer_id in waiting:
            return True
        if self._count >= self.limit:
            return False
        waiting[peer_id] = (serial & 0xFFFFFFFF).to_bytes(4, "big") + key
        self._count += 1
        return True

    def forget(self, peer_id: str) -> None:
        if self._count and peer_id in (shard := self._shards[hash(peer_id) & SHARD_MASK]):
            del shard[peer_id]
            self._count -= 1

    def claim(self, ids: Iterable[str]) -> list[tuple[str, int, bytes]]:
        """The waiters among ``ids`` (just entered), removed: ``(id, serial, key)``."""
        if not self._count:
            return []
        shards = self._shards
        found = []
        for peer_id in ids:
            entry = shards[hash(peer_id) & SHARD_MASK].pop(peer_id, None)
            if entry is not None:
                self._count -= 1
                serial = int.from_bytes(entry[:4], "big")
                if serial >= 1 << 31:  # the protobuf field is an int32
                    serial -= 1 << 32
                found.append((peer_id, serial, entry[4:]))
        return found
