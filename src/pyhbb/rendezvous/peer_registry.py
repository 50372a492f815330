"""In-memory peer records (docs/protocol.md §6.1), loaded lazily from the store by id.

A record is online while ``now - last_reg < REG_TIMEOUT``; records are created by
RegisterPk or loaded from the database (then offline until they register again). Unlike
upstream, the table is bounded: records that have been offline for long are evicted
(the database still holds them and reloads them on demand).

A million peers live here, so a record is normally one ``bytes`` value in the id → record
dict, laid out as::

    [n: 1 byte][pk: n bytes][last_reg: float64, 8 bytes][port: 2 bytes, big-endian][IP text]

No per-peer Python object: about 190 bytes per peer with its id string and dict slot, and a
dict of strings to bytes is one the cyclic GC never walks (a million small objects made a
full collection stall the loop for ~250 ms). The address is kept as the IP *text* the
socket gave us, so a heartbeat compares it without converting it (``addr_key``). Port 0
means "the IP of the last RegisterPk only" (upstream's ``info.ip`` fallback); nothing
after the time means no address.

Code that holds a record across a call, or gives it a session or details, gets an object
(:class:`PeerRecord`) wrapping the same bytes; the sweeper turns objects that nobody else
holds back into bytes.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Iterator, Sequence
from itertools import chain

from pyhbb.rendezvous.links import Link
from pyhbb.rendezvous.shards import SHARD_MASK, SHARDS
from pyhbb.rendezvous.stored_peer import CompactRow, StoredPeer
from pyhbb.rendezvous.sweep import KeyRing
from pyhbb.wire.addr_mangle import Addr, ip_from_bytes, ip_to_bytes, try_into_v4

REG_TIMEOUT = 30.0
ACCEPTED, IP_CHANGED, NO_KEY = 0, 1, 2  # results of a UDP heartbeat
ROOM_SEARCH_BUDGET = 64  # records examined per new id while full: O(1) per request
EXACT_COUNT_LIMIT = 50_000  # counting more on demand would stall the loop
EXPIRED = -1e18  # "now - 1 hour" upstream; any value far in the past
MAX_SWEEP_SLICE = 4096  # records examined per call: a few ms, never a loop stall (a pass
# over a million records then takes about four minutes at one call per second)
MAX_PK_BYTES = 255  # the record's one-byte length; real keys are 32 bytes

_TIME = struct.Struct("<d")
_pack_time = _TIME.pack
_unpack_time = _TIME.unpack_from
_EXPIRED_TIME = _pack_time(EXPIRED)
_OBJECT = b""
"""The dict value of a peer whose record is an object (then in ``PeerRegistry._objects``)."""
_UNSHARED_REFS = 3
"""``sys.getrefcount`` of an object referenced only by its table and one local name (the
call's own argument is the third): no one else can be holding it."""


def addr_key(addr: Addr) -> bytes:
    """How a record holds an address: the port (2 bytes, big-endian), then the IP text.
    Built from what the socket gave in ~0.1 µs (packing the IP in Python cost 0.6-2.4 µs
    per heartbeat), and compared as bytes: the adapters hand over canonical text."""
    ip, port = addr
    return port.to_bytes(2, "big") + ip.encode()


def addr_from_key(key: bytes) -> Addr:
    return key[2:].decode(), int.from_bytes(key[:2], "big")


def canonical_ip(ip: str) -> str | None:
    """``ip`` as the socket layer writes it (IPv4-mapped as IPv4), or ``None`` when it is
    no IP address: for text from the database, which any writer may have filled."""
    ip = try_into_v4(ip)
    try:
        raw = ip_to_bytes(ip)
    except ValueError:
        return None
    # dotted IPv4 that parses is canonical already (ip_to_bytes takes canonical octets only)
    return ip if len(raw) == 4 and ":" not in ip else ip_from_bytes(raw)


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # str(n) for n in 0..255, no more
_is_canonical_v4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}").fullmatch
"""Whether the text is dotted IPv4 that :func:`canonical_ip` returns as it is: one C call
instead of its three Python ones, for the common case of a warm start's rows."""
_LENGTH_BYTE = [bytes((n,)) for n in range(MAX_PK_BYTES + 1)]


def stored_blob(row: StoredPeer, last_reg: float = EXPIRED) -> bytes:
    """The compact record of a database row: its key, offline (§6.1), and ``info.ip`` as
    an IP-only address (port 0) for the IP-change test; a key no client could have sent
    or an unparsable IP is left out, so that the next heartbeat asks for the key."""
    pk = row.pk if len(row.pk) <= MAX_PK_BYTES else b""
    ip = canonical_ip(row.ip) if row.ip else None
    time = _EXPIRED_TIME if last_reg == EXPIRED else _pack_time(last_reg)
    return bytes((len(pk),)) + pk + time + (addr_key((ip, 0)) if ip else b"")


def heartbeat(blob: bytes, key: bytes, now: float, from_loopback: bool) -> bytes | int:
    """The RegisterPeer rule of §6.3 on a compact record: the record refreshed with the
    address ``key`` (:func:`addr_key`) and time ``now``, or :data:`IP_CHANGED` /
    :data:`NO_KEY` (the client must send RegisterPk; nothing changes)."""
    cut = 1 + blob[0]
    at = cut + 8
    if blob[at:] != key:
        if blob[at + 2 :] != key[2:] and not from_loopback:
            return IP_CHANGED
        if cut == 1:
            return NO_KEY
    elif cut == 1:
        return NO_KEY
    return blob[:cut] + _pack_time(now) + key


def last_reg_of(blob: bytes) -> float:
    return float(_unpack_time(blob, 1 + blob[0])[0])


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
    """One peer's registration state as an object: the compact bytes (module docstring)
    plus what only some peers have for a while (a session, the details)."""

    __slots__ = ("_blob", "details", "session")

    def __init__(self, guid: bytes = b"", uuid: bytes = b"", pk: bytes = b"", ip: str = "") -> None:
        self._blob = bytes((len(pk),)) + pk + _EXPIRED_TIME
        self.session: Link | None = None
        """TCP/WebSocket registration session, when the peer registered over one."""
        self.details: PeerDetails | None = PeerDetails(guid, uuid, ip)
        if ip:
            self.set_ip_only(ip)

    @classmethod
    def from_stored(cls, row: StoredPeer) -> PeerRecord:
        record = cls.wrap(stored_blob(row))
        record.details = PeerDetails.from_stored(row)
        return record

    @classmethod
    def wrap(cls, blob: bytes) -> PeerRecord:
        """The object form of a compact record."""
        record = cls.__new__(cls)
        record._blob = blob
        record.session = None
        record.details = None
        return record

    @property
    def blob(self) -> bytes:
        """The compact form (without the session and details)."""
        return self._blob

    # -- key, time and address, in the blob --------------------------------------------------

    @property
    def pk(self) -> bytes:
        blob = self._blob
        return blob[1 : 1 + blob[0]]

    @pk.setter
    def pk(self, pk: bytes) -> None:
        blob = self._blob
        self._blob = bytes((len(pk),)) + pk + blob[1 + blob[0] :]

    @property
    def has_pk(self) -> bool:
        return self._blob[0] != 0

    @property
    def last_reg(self) -> float:
        return last_reg_of(self._blob)

    @last_reg.setter
    def last_reg(self, now: float) -> None:
        blob = self._blob
        cut = 1 + blob[0]
        self._blob = blob[:cut] + _pack_time(now) + blob[cut + 8 :]

    def _addr_key(self) -> bytes:
        blob = self._blob
        return blob[9 + blob[0] :]

    @property
    def addr(self) -> Addr | None:
        """Last registered UDP address (normalised); ``None`` = never registered by UDP."""
        key = self._addr_key()
        if not key or key[:2] == b"\0\0":
            return None
        return addr_from_key(key)

    @addr.setter
    def addr(self, addr: Addr | None) -> None:
        blob = self._blob
        head = blob[: 9 + blob[0]]
        self._blob = head if addr is None else head + addr_key(addr)

    def set_ip_only(self, ip: str) -> None:
        """Remember ``ip`` for the IP-change test while no UDP address is known."""
        canonical = canonical_ip(ip)
        # an unparsable stored IP: no address, so the next heartbeat asks for the key
        self.addr = None if canonical is None else (canonical, 0)

    @property
    def registered_ip(self) -> str:
        """The IP the next RegisterPeer is compared with: UDP address, else ``info.ip``."""
        return self._addr_key()[2:].decode()

    def udp_heartbeat(self, key: bytes, now: float, from_loopback: bool) -> int:
        """RegisterPeer from the address ``key`` (:func:`addr_key`): :data:`ACCEPTED`
        (address and time refreshed), :data:`IP_CHANGED` or :data:`NO_KEY`."""
        result = heartbeat(self._blob, key, now, from_loopback)
        if type(result) is int:
            return result
        assert isinstance(result, bytes)
        self._blob = result
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
    """The id → record map, with the bound and eviction policy in one place.

    Values are compact records (bytes) or, for peers held as objects, :data:`_OBJECT`
    with the object in a small side table. Switching between the two replaces a value in
    place: the table never grows or shrinks for it. The table is :data:`SHARDS` dicts
    (rendezvous/shards.py): growing one dict of a million entries stalled the loop.
    """

    def __init__(self, max_peers: int = 2_000_000, evict_after: float = 86_400.0) -> None:
        self.max_peers = max_peers
        self.evict_after = evict_after
        self._shards: list[dict[str, bytes]] = [{} for _ in range(SHARDS)]
        self._count = 0
        self._objects: dict[str, PeerRecord] = {}
        self._ring = KeyRing[str]()
        self.online_estimate = 0
        """Online peers counted during the last complete sweep (counting on demand would
        walk a million records and stall the loop)."""
        self._online_seen = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._shards[hash(peer_id) & SHARD_MASK]

    @property
    def largest_dict(self) -> int:
        """Entries of the largest dict the table is made of: what one growth copies."""
        return max(len(shard) for shard in self._shards)

    @property
    def objects(self) -> int:
        """Records held as objects right now (the rest are compact)."""
        return len(self._objects)

    def get(self, peer_id: str) -> PeerRecord | None:
        """The record as an object that stays the record until released (the sweeper
        compacts it once nobody else holds it)."""
        peers = self._shards[hash(peer_id) & SHARD_MASK]
        blob = peers.get(peer_id)
        if blob is None:
            return None
        if not blob:
            return self._objects[peer_id]
        record = PeerRecord.wrap(blob)
        self._objects[peer_id] = record
        peers[peer_id] = _OBJECT
        return record

    def heartbeat(self, peer_id: str, key: bytes, now: float, from_loopback: bool) -> int | None:
        """A UDP RegisterPeer for ``peer_id`` from address ``key`` (:func:`addr_key`): the
        :func:`heartbeat` result, or ``None`` when the id is not in memory. The hot path:
        a compact record stays compact."""
        peers = self._shards[hash(peer_id) & SHARD_MASK]
        blob = peers.get(peer_id)
        if blob is None:
            return None
        if not blob:
            return self._objects[peer_id].udp_heartbeat(key, now, from_loopback)
        result = heartbeat(blob, key, now, from_loopback)
        if type(result) is int:
            return result
        peers[peer_id] = result  # type: ignore[assignment]  # bytes: the refreshed record
        return ACCEPTED

    def online(self, peer_id: str, now: float) -> bool:
        """Whether ``peer_id`` is online, without making an object of its record."""
        blob = self._shards[hash(peer_id) & SHARD_MASK].get(peer_id)
        if blob is None:
            return False
        if not blob:
            return self._objects[peer_id].online(now)
        return now - last_reg_of(blob) < REG_TIMEOUT

    def registered_ip(self, peer_id: str) -> str:
        """The IP the next heartbeat of ``peer_id`` is compared with ("" if unknown)."""
        blob = self._shards[hash(peer_id) & SHARD_MASK].get(peer_id)
        if blob is None:
            return ""
        if not blob:
            return self._objects[peer_id].registered_ip
        return blob[11 + blob[0] :].decode()

    def ids(self) -> list[str]:
        """Every id in memory (a copy: O(n), for rare admin and cluster operations)."""
        return [peer_id for shard in self._shards for peer_id in shard]

    def items(self) -> Iterator[tuple[str, PeerRecord]]:
        """Every record, compact ones as detached snapshots (change records through
        :meth:`get`); for tests and small tables."""
        objects = self._objects
        for peer_id, blob in [item for shard in self._shards for item in shard.items()]:
            yield peer_id, objects[peer_id] if not blob else PeerRecord.wrap(blob)

    def compact_records(self) -> tuple[list[str], list[bytes]]:
        """Every id and its compact record, in table order (a restart in place's
        snapshot, rendezvous/handover.py): copies made in C, not a loop per record."""
        ids = list(chain.from_iterable(self._shards))
        records = list(chain.from_iterable(shard.values() for shard in self._shards))
        objects = self._objects
        if objects:
            records = [record or objects[i].blob for i, record in zip(ids, records, strict=True)]
        return ids, records

    def add_compact(self, records: dict[str, bytes]) -> None:
        """Fill the empty table with checked compact records (a restart in place)."""
        if self._count:
            raise ValueError("add_compact fills an empty table only")
        shards = self._shards
        for peer_id, record in records.items():  # before the ports open: no stall
            shards[hash(peer_id) & SHARD_MASK][peer_id] = record
        self._count = len(records)
        ids = list(records)
        for start in range(0, len(ids), 4096):  # KeyRing.extend is quadratic in its list
            self._ring.extend(ids[start : start + 4096])

    def has_room(self, now: float) -> bool:
        """Whether a new record may be added; when full, a small constant slice of the
        records is examined for offline ones to evict (never a scan on a client's request:
        the housekeeping timer does the rest)."""
        if self._count < self.max_peers:
            return True
        self.evict_step(now, ROOM_SEARCH_BUDGET, offline_for=0.0)
        return self._count < self.max_peers

    def add_stored(self, peer_id: str, row: StoredPeer, last_reg: float = EXPIRED) -> None:
        """Enter the database row of an id not in memory, as a compact record (offline:
        ``last_reg`` at least :data:`REG_TIMEOUT` in the past)."""
        peers = self._shards[hash(peer_id) & SHARD_MASK]
        assert peer_id not in peers
        self._ring.added(peer_id)
        peers[peer_id] = stored_blob(row, last_reg)
        self._count += 1

    def add_rows(self, rows: Sequence[CompactRow], last_reg: float, room: int) -> int:
        """Enter the rows ``(id, pk, info.ip)`` whose ids are not in memory, at most
        ``room`` of them, in order; returns how many were entered. Each record is the one
        :meth:`add_stored` makes of the same row, built with fewer calls: a warm start
        enters a million rows."""
        if room <= 0:
            return 0
        shards = self._shards
        time = _EXPIRED_TIME if last_reg == EXPIRED else _pack_time(last_reg)
        time_port0 = time + b"\0\0"  # an IP-only address follows the time (addr_key)
        length_byte = _LENGTH_BYTE
        is_canonical_v4 = _is_canonical_v4
        added: list[str] = []
        for peer_id, pk, ip in rows:
            peers = shards[hash(peer_id) & SHARD_MASK]
            if peer_id in peers:
                continue
            try:
                head = length_byte[len(pk)] + pk
            except IndexError:  # a key no client could have sent: left out
                head = b"\0"
            if is_canonical_v4(ip):
                peers[peer_id] = time_port0.join((head, ip.encode()))
            else:  # IPv6, mapped, empty or no IP: the general rule (stored_blob)
                canonical = canonical_ip(ip) if ip else None
                peers[peer_id] = head + (time + addr_key((canonical, 0)) if canonical else time)
            added.append(peer_id)
            if len(added) == room:
                break
        self._ring.extend(added)
        self._count += len(added)
        return len(added)

    def put(self, peer_id: str, record: PeerRecord) -> None:
        peers = self._shards[hash(peer_id) & SHARD_MASK]
        if peer_id not in peers:
            self._ring.added(peer_id)
            self._count += 1
        self._objects[peer_id] = record
        peers[peer_id] = _OBJECT

    def remove(self, peer_id: str, record: PeerRecord | None = None) -> None:
        """Remove ``peer_id`` (only if it still maps to ``record`` when one is given)."""
        if peer_id not in self:
            return
        if record is not None and self._objects.get(peer_id) is not record:
            return
        self._drop(peer_id)

    def rename(self, old_id: str, new_id: str) -> None:
        blob = self._shards[hash(old_id) & SHARD_MASK].get(old_id)
        if blob is None:
            return
        record = None if blob else self._objects.get(old_id)
        self._drop(old_id)
        if new_id in self:
            self._drop(new_id)
        self._ring.added(new_id)
        self._shards[hash(new_id) & SHARD_MASK][new_id] = blob
        self._count += 1
        if record is not None:
            self._objects[new_id] = record

    def _drop(self, peer_id: str) -> None:
        """Forget ``peer_id`` outside the sweeper (its ring entry becomes an orphan)."""
        del self._shards[hash(peer_id) & SHARD_MASK][peer_id]
        self._count -= 1
        self._objects.pop(peer_id, None)
        self._ring.removed(peer_id)

    def compact(self, peer_id: str) -> bool:
        """Turn the record of ``peer_id`` back into bytes if it has neither session nor
        details and nobody holds the object (safe at any time: holders keep it as is)."""
        record = self._objects.get(peer_id)
        if (
            record is None
            or record.session is not None
            or record.details is not None
            or sys.getrefcount(record) > _UNSHARED_REFS
        ):
            return False
        self._shards[hash(peer_id) & SHARD_MASK][peer_id] = record.blob
        del self._objects[peer_id]
        return True

    def evict_step(self, now: float, budget: int, offline_for: float | None = None) -> int:
        """Look at the next ``budget`` records (at most :data:`MAX_SWEEP_SLICE`): drop
        those offline for longer than ``offline_for`` (default ``evict_after``; the
        database keeps them) and compact the objects nobody holds any more. Returns how
        many were dropped."""
        limit = REG_TIMEOUT + (self.evict_after if offline_for is None else offline_for)
        shards, objects, ring = self._shards, self._objects, self._ring
        removed = online = 0
        for peer_id in ring.take(min(budget, MAX_SWEEP_SLICE)):
            peers = shards[hash(peer_id) & SHARD_MASK]
            blob = peers.get(peer_id)
            if blob is None:
                continue  # gone (its entry was an orphan the ring skipped)
            if not blob:
                record = objects[peer_id]
                session = record.session is not None
                idle = now - record.last_reg
                del record
                if not session:
                    self.compact(peer_id)
            else:
                session = False
                idle = now - last_reg_of(blob)
            if not session and idle > limit:
                del peers[peer_id]
                objects.pop(peer_id, None)
                removed += 1
                continue
            if session or idle < REG_TIMEOUT:
                online += 1
            ring.keep(peer_id)
        self._count -= removed
        self._online_seen += online
        if ring.pass_done():
            self.online_estimate, self._online_seen = self._online_seen, 0
        return removed

    def online_count(self, now: float) -> int:
        """Online peers: counted exactly in small tables, else the last sweep's count."""
        if self._count > EXACT_COUNT_LIMIT:
            return self.online_estimate
        return sum(1 for shard in self._shards for peer_id in shard if self.online(peer_id, now))
