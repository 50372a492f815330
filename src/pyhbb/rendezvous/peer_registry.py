"""In-memory peer records (PROTOCOL.md §6.1), loaded lazily from the store by id.

A record is online while ``now - last_reg < REG_TIMEOUT``; records are created by
RegisterPk or loaded from the database (then offline until they register again). Unlike
upstream, the table is bounded: records that have been offline for long are evicted
(the database still holds them and reloads them on demand).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pyhbb.rendezvous.sweep import Sweeper
from pyhbb.store.base import StoredPeer
from pyhbb.wire.addr_mangle import Addr

if TYPE_CHECKING:
    from pyhbb.rendezvous.links import Link

REG_TIMEOUT = 30.0
FULL_TABLE_BUDGET = 20_000
EXPIRED = -1e18  # "now - 1 hour" upstream; any value far in the past


class PeerRecord:
    """One peer's registration state. Mutated in place on the hot path."""

    __slots__ = (
        "addr",
        "guid",
        "ip",
        "last_reg",
        "pk",
        "reg_pk_count",
        "reg_pk_time",
        "session",
        "uuid",
    )

    def __init__(
        self,
        guid: bytes = b"",
        uuid: bytes = b"",
        pk: bytes = b"",
        ip: str = "",
    ) -> None:
        self.addr: Addr | None = None
        """Last registered UDP address (normalised); ``None`` = never registered."""
        self.last_reg = EXPIRED
        self.guid = guid
        self.uuid = uuid
        self.pk = pk
        self.ip = ip
        """``info.ip`` of the last accepted RegisterPk."""
        self.reg_pk_count = 0
        self.reg_pk_time = EXPIRED
        self.session: Link | None = None
        """TCP/WebSocket registration session, when the peer registered over one."""

    @classmethod
    def from_stored(cls, row: StoredPeer) -> PeerRecord:
        return cls(row.guid, row.uuid, row.pk, row.ip)

    def online(self, now: float) -> bool:
        return self.session is not None or now - self.last_reg < REG_TIMEOUT


class PeerRegistry:
    """The id → record map, with the bound and eviction policy in one place."""

    def __init__(self, max_peers: int = 2_000_000, evict_after: float = 86_400.0) -> None:
        self.max_peers = max_peers
        self.evict_after = evict_after
        self._peers: dict[str, PeerRecord] = {}
        self._sweeper = Sweeper(self._peers)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> PeerRecord | None:
        return self._peers.get(peer_id)

    def items(self) -> Iterator[tuple[str, PeerRecord]]:
        return iter(self._peers.items())

    def has_room(self, now: float) -> bool:
        """Whether a new record may be added; when full, one bounded slice of offline
        records is evicted (never a full scan on a client's request)."""
        if len(self._peers) < self.max_peers:
            return True
        self.evict_step(now, FULL_TABLE_BUDGET, offline_for=0.0)
        return len(self._peers) < self.max_peers

    def put(self, peer_id: str, record: PeerRecord) -> None:
        self._peers[peer_id] = record

    def remove(self, peer_id: str, record: PeerRecord | None = None) -> None:
        """Remove ``peer_id`` (only if it still maps to ``record`` when one is given)."""
        if record is None or self._peers.get(peer_id) is record:
            self._peers.pop(peer_id, None)

    def rename(self, old_id: str, new_id: str) -> None:
        record = self._peers.pop(old_id, None)
        if record is not None:
            self._peers[new_id] = record

    def evict_step(self, now: float, budget: int, offline_for: float | None = None) -> int:
        """Drop, among the next ``budget`` records, those offline for longer than
        ``offline_for`` (default ``evict_after``); the database keeps them."""
        limit = REG_TIMEOUT + (self.evict_after if offline_for is None else offline_for)
        return self._sweeper.step(budget, lambda r: r.session is None and now - r.last_reg > limit)

    def online_count(self, now: float) -> int:
        return sum(1 for r in self._peers.values() if r.online(now))
