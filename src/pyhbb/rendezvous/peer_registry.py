"""In-memory peer records (docs/protocol.md §6.1), loaded lazily from the store by id.

A record is online while ``now - last_reg < REG_TIMEOUT``; records are created by
RegisterPk or loaded from the database (then offline until they register again). Unlike
upstream, the table is bounded: records that have been offline for long are evicted
(the database still holds them and reloads them on demand).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pyhbb.rendezvous.links import Link
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.rendezvous.sweep import Sweeper
from pyhbb.wire.addr_mangle import Addr, ip_from_bytes, ip_to_bytes, try_into_v4

REG_TIMEOUT = 30.0
ACCEPTED, IP_CHANGED, NO_KEY = 0, 1, 2  # results of PeerRecord.udp_heartbeat
ROOM_SEARCH_BUDGET = 64  # records examined per new id while full: O(1) per request
EXACT_COUNT_LIMIT = 50_000  # counting more on demand would stall the loop
EXPIRED = -1e18  # "now - 1 hour" upstream; any value far in the past


def pack_addr(addr: Addr) -> bytes:
    """4 or 16 address bytes, then the port big-endian (6 or 18 bytes)."""
    ip, port = addr
    return ip_to_bytes(ip) + port.to_bytes(2, "big")


def unpack_addr(raw: bytes) -> Addr:
    return ip_from_bytes(raw[:-2]), int.from_bytes(raw[-2:], "big")


class PeerDetails:
    """What only RegisterPk and ID changes need: loaded from the database for the decision
    and dropped right after it, since keeping it would double every peer's memory."""

    __slots__ = ("guid", "ip", "owner", "revision", "uuid")

    def __init__(
        self, guid: bytes = b"", uuid: bytes = b"", ip: str = "", owner: str = "", revision: int = 0
    ) -> None:
        self.guid = guid
        self.uuid = uuid
        self.ip = ip
        """``info.ip`` of the last accepted RegisterPk (normalised)."""
        self.owner = owner
        """The node holding the peer in a shared directory ("" on a single server)."""
        self.revision = revision
        """The directory revision these details were read at (0 on a single server)."""

    @classmethod
    def from_stored(cls, row: StoredPeer) -> PeerDetails:
        return cls(row.guid, row.uuid, try_into_v4(row.ip), row.owner, row.revision)


class PeerRecord:
    """One peer's registration state, compact because a million of them live in memory.

    The key and the UDP address share one bytes object (``len(pk)``, pk, packed address):
    with CPython's allocator it costs what the key alone would. A packed address with port
    0 carries only the IP of the last RegisterPk (upstream's ``info.ip`` fallback).
    """

    __slots__ = ("_blob", "details", "last_reg", "session")

    def __init__(self, guid: bytes = b"", uuid: bytes = b"", pk: bytes = b"", ip: str = "") -> None:
        self._blob = bytes((len(pk),)) + pk
        self.last_reg = EXPIRED
        self.session: Link | None = None
        """TCP/WebSocket registration session, when the peer registered over one."""
        self.details: PeerDetails | None = PeerDetails(guid, uuid, ip)
        if ip:
            self.set_ip_only(ip)

    @classmethod
    def from_stored(cls, row: StoredPeer) -> PeerRecord:
        record = cls(row.guid, row.uuid, row.pk, try_into_v4(row.ip))
        if row.owner or row.revision:
            record.details = PeerDetails.from_stored(row)
        return record

    # -- key and address, in the blob ------------------------------------------------------

    @property
    def pk(self) -> bytes:
        blob = self._blob
        return blob[1 : 1 + blob[0]]

    @pk.setter
    def pk(self, pk: bytes) -> None:
        self._blob = bytes((len(pk),)) + pk + self._packed_addr()

    @property
    def has_pk(self) -> bool:
        return self._blob[0] != 0

    def _packed_addr(self) -> bytes:
        blob = self._blob
        return blob[1 + blob[0] :]

    @property
    def addr(self) -> Addr | None:
        """Last registered UDP address (normalised); ``None`` = never registered by UDP."""
        packed = self._packed_addr()
        if not packed or packed[-2:] == b"\0\0":
            return None
        return unpack_addr(packed)

    @addr.setter
    def addr(self, addr: Addr | None) -> None:
        blob = self._blob
        head = blob[: 1 + blob[0]]
        self._blob = head if addr is None else head + pack_addr(addr)

    def set_ip_only(self, ip: str) -> None:
        """Remember ``ip`` for the IP-change test while no UDP address is known."""
        try:
            self.addr = (ip, 0)
        except ValueError:
            self.addr = None  # an unparsable stored IP: the next heartbeat asks for the key

    @property
    def registered_ip(self) -> str:
        """The IP the next RegisterPeer is compared with: UDP address, else ``info.ip``."""
        packed = self._packed_addr()
        return unpack_addr(packed)[0] if packed else ""

    def udp_heartbeat(self, packed: bytes, now: float, from_loopback: bool) -> int:
        """RegisterPeer from the address ``packed`` (:func:`pack_addr`), the hot path of
        §6.3: returns :data:`ACCEPTED` (address and time refreshed), :data:`IP_CHANGED` or
        :data:`NO_KEY` (the client must send RegisterPk; nothing is updated)."""
        blob = self._blob
        cut = 1 + blob[0]
        if blob[cut:] != packed:
            if blob[cut:-2] != packed[:-2] and not from_loopback:
                return IP_CHANGED
            if cut == 1:
                return NO_KEY
            self._blob = blob[:cut] + packed  # a new port (NAT rebinding): allocates
        elif cut == 1:
            return NO_KEY
        self.last_reg = now
        self.session = None  # the latest registration decides the route
        return ACCEPTED

    # -- details (RegisterPk only) -----------------------------------------------------------

    def _details(self) -> PeerDetails:
        details = self.details
        if details is None:
            raise LookupError("peer details exist only during with_peer(need_details=True)")
        return details

    @property
    def guid(self) -> bytes:
        return self._details().guid

    @property
    def uuid(self) -> bytes:
        return self._details().uuid

    @property
    def ip(self) -> str:
        return self._details().ip

    def online(self, now: float) -> bool:
        return self.session is not None or now - self.last_reg < REG_TIMEOUT


class PeerRegistry:
    """The id → record map, with the bound and eviction policy in one place."""

    def __init__(self, max_peers: int = 2_000_000, evict_after: float = 86_400.0) -> None:
        self.max_peers = max_peers
        self.evict_after = evict_after
        self._peers: dict[str, PeerRecord] = {}
        self._sweeper = Sweeper(self._peers)
        self.online_estimate = 0
        """Online peers counted during the last complete sweep (counting on demand would
        walk a million records and stall the loop)."""
        self._online_seen = 0
        # The dict's own method: one call less on the path of every heartbeat.
        self.get: Callable[[str], PeerRecord | None] = self._peers.get

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._peers

    def items(self) -> Iterator[tuple[str, PeerRecord]]:
        return iter(self._peers.items())

    def has_room(self, now: float) -> bool:
        """Whether a new record may be added; when full, a small constant slice of the
        records is examined for offline ones to evict (never a scan on a client's request:
        the housekeeping timer does the rest)."""
        if len(self._peers) < self.max_peers:
            return True
        self.evict_step(now, ROOM_SEARCH_BUDGET, offline_for=0.0)
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

        def stale(r: PeerRecord) -> bool:
            if r.session is None and now - r.last_reg > limit:
                return True
            if r.session is not None or now - r.last_reg < REG_TIMEOUT:
                self._online_seen += 1
            return False

        passes = self._sweeper.passes
        removed = self._sweeper.step(budget, stale)
        if self._sweeper.passes != passes:
            self.online_estimate, self._online_seen = self._online_seen, 0
        return removed

    def online_count(self, now: float) -> int:
        """Online peers: counted exactly in small tables, else the last sweep's count."""
        if len(self._peers) > EXACT_COUNT_LIMIT:
            return self.online_estimate
        return sum(1 for r in self._peers.values() if r.online(now))
