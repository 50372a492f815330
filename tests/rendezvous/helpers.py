"""Shared helpers for the sans-IO tests of the rendezvous core.

The tests play the adapters' role: they feed bytes with an address and a ``now`` (plain
numbers, no clock), answer ``LoadPeer`` from a dict of ``StoredPeer`` rows and complete or
fail ``Persist`` actions by hand.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nacl.signing import SigningKey

from pyhbb.rendezvous.actions import (
    Action,
    Close,
    InsertPeer,
    LoadPeer,
    Persist,
    RenamePeer,
    Send,
    SendUdp,
    StoreFailure,
    UpdatePeer,
)
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.links import Link, Transport
from pyhbb.rendezvous.state import CoreSettings
from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb

T0 = 10_000.0  # an arbitrary monotonic start time
SEED = bytes(range(32))  # docs/protocol.md §14.4
PK_A = bytes([0x11]) * 32
PK_B = bytes([0x22]) * 32
UUID = b"machine-uuid-1"
B_ID = "123456789"
B_ADDR = ("203.0.113.7", 50000)
A_ADDR = ("198.51.100.20", 40000)

DB_DOWN = StoreFailure("disk I/O error (simulated)")

_guids = itertools.count(1)


def guid_source(n: int) -> bytes:
    """Deterministic ``random_bytes`` for the core."""
    return next(_guids).to_bytes(n, "big")


def signing_key() -> SigningKey:
    return SigningKey(SEED)


def make_core(
    mangle_time: Callable[[], int] = addr_mangle.now_t, **settings: Any
) -> RendezvousCore:
    """A core with deterministic guids; ``mangle_time`` is the AddrMangle clock (§4.1)."""
    return RendezvousCore(CoreSettings(**settings), guid_source, mangle_time)


def rm(**fields: Any) -> bytes:
    """Serialise ``RendezvousMessage(<field>=...)``."""
    return pb.RendezvousMessage(**fields).SerializeToString()


def decode(payload: bytes) -> pb.RendezvousMessage:
    msg = pb.RendezvousMessage()
    msg.ParseFromString(payload)
    return msg


def tcp(addr: tuple[str, int] = A_ADDR) -> Link:
    return Link(addr, Transport.TCP)


def ws(addr: tuple[str, int] = A_ADDR) -> Link:
    return Link(addr, Transport.WS)


def nat(addr: tuple[str, int] = A_ADDR) -> Link:
    return Link(addr, Transport.NAT)


def register_peer(peer_id: str = B_ID, serial: int = 3) -> bytes:
    return rm(register_peer=pb.RegisterPeer(id=peer_id, serial=serial))


def register_pk(peer_id: str = B_ID, uuid: bytes = UUID, pk: bytes = PK_A) -> bytes:
    return rm(register_pk=pb.RegisterPk(id=peer_id, uuid=uuid, pk=pk))


def punch_request(peer_id: str = B_ID, **fields: Any) -> bytes:
    return rm(punch_hole_request=pb.PunchHoleRequest(id=peer_id, **fields))


def stored(
    peer_id: str = B_ID,
    uuid: bytes = UUID,
    pk: bytes = PK_A,
    ip: str = B_ADDR[0],
    guid: bytes = b"G" * 16,
) -> StoredPeer:
    return StoredPeer(guid=guid, id=peer_id, uuid=uuid, pk=pk, ip=ip)


_DATABASES: weakref.WeakKeyDictionary[RendezvousCore, dict[str, StoredPeer | None]] = (
    weakref.WeakKeyDictionary()
)


def database(core: RendezvousCore) -> dict[str, StoredPeer | None]:
    """The fake database of ``core``: rows by id, kept up to date by :func:`resolve`."""
    return _DATABASES.setdefault(core, {})


def _apply(db: dict[str, StoredPeer | None], write: object) -> None:
    """What the real store does with a write."""
    if isinstance(write, InsertPeer):
        db[write.peer_id] = StoredPeer(write.guid, write.peer_id, write.uuid, write.pk, write.ip)
        return
    for peer_id, row in list(db.items()):
        if row is None or not isinstance(write, UpdatePeer | RenamePeer) or row.guid != write.guid:
            continue
        del db[peer_id]
        if isinstance(write, UpdatePeer):
            db[write.peer_id] = StoredPeer(row.guid, write.peer_id, row.uuid, write.pk, write.ip)
        else:
            db[write.new_id] = StoredPeer(row.guid, write.new_id, row.uuid, row.pk, row.ip)


def loaded(core: RendezvousCore, actions: list[Action], now: float) -> list[Action]:
    """Answer the LoadPeer actions from the fake database (RegisterPk always reads a
    peer's details from the store), leaving every other action to the test."""
    db = database(core)
    out: list[Action] = []
    pending = list(actions)
    while pending:
        action = pending.pop(0)
        if isinstance(action, LoadPeer):
            pending += core.peer_loaded(action.peer_id, db.get(action.peer_id), now)
        else:
            out.append(action)
    return out


def reg(core: RendezvousCore, data: bytes, src: tuple[str, int], now: float) -> list[Action]:
    """``core.on_udp`` with its LoadPeer answered from the fake database."""
    return loaded(core, core.on_udp(data, src, now), now)


def row(core: RendezvousCore, peer_id: str = B_ID) -> StoredPeer:
    """The peer's row in the fake database (where uuid, guid and info.ip live)."""
    found = database(core).get(peer_id)
    assert found is not None, peer_id
    return found


def resolve(
    core: RendezvousCore,
    actions: list[Action],
    now: float,
    rows: Mapping[str, StoredPeer | None] | None = None,
    persist_ok: bool = True,
) -> list[Action]:
    """Act as the adapters' executor: answer every LoadPeer from the core's fake database
    (seeded with ``rows``; missing = not in the database) and complete every Persist,
    applying it to that database and telling the core (or failing it with ``DB_DOWN``),
    until only network actions remain."""
    db = database(core)
    for peer_id, row in (rows or {}).items():
        db.setdefault(peer_id, row)
    out: list[Action] = []
    pending = loaded(core, actions, now)
    while pending:
        action = pending.pop(0)
        if not isinstance(action, Persist):
            out.append(action)
        elif persist_ok:
            _apply(db, action.write)
            pending += loaded(core, core.write_done(action), now)
        else:
            pending += loaded(core, core.write_failed(action, DB_DOWN), now)
    return out


def udp_replies(actions: Iterable[Action]) -> list[tuple[bytes, tuple[str, int]]]:
    out = []
    for a in actions:
        assert isinstance(a, SendUdp), a
        out.append((a.payload, a.addr))
    return out


def sends(actions: Iterable[Action]) -> list[tuple[Link, bytes]]:
    return [(a.link, a.payload) for a in actions if isinstance(a, Send)]


def closes(actions: Iterable[Action]) -> list[Link]:
    return [a.link for a in actions if isinstance(a, Close)]


def bring_online(
    core: RendezvousCore,
    now: float,
    peer_id: str = B_ID,
    addr: tuple[str, int] = B_ADDR,
    pk: bytes = PK_A,
    uuid: bytes = UUID,
) -> None:
    """Register ``peer_id`` by UDP RegisterPk as a brand new peer (DB: absent)."""
    actions = resolve(core, core.on_udp(register_pk(peer_id, uuid, pk), addr, now), now)
    assert actions == [SendUdp(REG_OK, addr)], actions


def mangled(data: bytes) -> tuple[str, int]:
    return addr_mangle.decode(data)


# Wire constants from docs/protocol.md §14.3 (and the same encoding rules for other results).
REQUEST_PK = bytes.fromhex("3a021001")
NO_REQUEST_PK = bytes.fromhex("3a00")
REG_OK = bytes.fromhex("820100")
REG_UUID_MISMATCH = bytes.fromhex("8201020802")
REG_TOO_FREQUENT = bytes.fromhex("8201020804")
REG_INVALID_ID = bytes.fromhex("8201020805")
REG_NOT_SUPPORT = bytes.fromhex("8201020806")
REG_SERVER_ERROR = bytes.fromhex("8201020807")
PUNCH_ID_NOT_EXIST = bytes.fromhex("5a00")
PUNCH_OFFLINE = bytes.fromhex("5a021802")
PUNCH_LICENSE_MISMATCH = bytes.fromhex("5a021803")
# IdPk{id="123456789", pk=32x0x11} signed with the §14.4 seed (combined mode, 109 bytes)
SIGNED_IDPK_VECTOR = bytes.fromhex(
    "f4cb34dbfc530c3fb06ecbfb8dad3b63d15a054f282a7cd8e1551aa25b8bebc6"
    "421a5c9ffaca8cc33b478c1839899497a8fc46c42da3820558ef2e949e6d1906"
    "0a09313233343536373839122011111111111111111111111111111111111111"
    "11111111111111111111111111"
)
