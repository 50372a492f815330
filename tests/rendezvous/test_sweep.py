"""Incremental expiry: every table is swept a slice at a time and stays bounded."""

from __future__ import annotations

from pyhbb.rendezvous.peer_registry import REG_TIMEOUT, PeerRecord, PeerRegistry
from pyhbb.rendezvous.rate_limits import BlockerLimits, IpBlocker
from pyhbb.rendezvous.sweep import KeyRing


def _step(ring: KeyRing[int], table: dict[int, int], budget: int, stale: object) -> int:
    """What a table owner does with its ring: drop the stale keys, keep the others."""
    assert callable(stale)
    removed = 0
    for key in ring.take(budget):
        if stale(table[key]):
            del table[key]
            removed += 1
        else:
            ring.keep(key)
    return removed


def test_key_ring_visits_every_key_once_per_pass_in_slices() -> None:
    table = {i: i for i in range(10)}
    ring = KeyRing[int]()
    for key in table:
        ring.added(key)
    assert _step(ring, table, 4, lambda v: v % 2 == 0) == 2  # keys 0..3
    table[100] = 100  # added during a pass: seen in the next pass
    ring.added(100)
    assert _step(ring, table, 4, lambda v: v % 2 == 0) == 2  # keys 4..7
    assert not ring.pass_done()
    assert _step(ring, table, 4, lambda v: v % 2 == 0) == 1  # keys 8..9
    assert ring.pass_done() and not ring.pass_done()  # reported once
    assert sorted(table) == [1, 3, 5, 7, 9, 100]
    assert _step(ring, table, 100, lambda v: v == 100) == 1
    assert sorted(table) == [1, 3, 5, 7, 9]
    assert len(ring) == 5  # exactly the keys left: no snapshot, no leftovers


def test_key_ring_skips_keys_removed_meanwhile_and_keeps_readded_ones() -> None:
    table = {"a": 1, "b": 2}
    ring = KeyRing[str]()
    for key in table:
        ring.added(key)
    assert list(ring.take(1)) == ["a"]
    ring.keep("a")
    del table["b"]
    ring.removed("b")
    assert list(ring.take(5)) == []  # "b" is gone: skipped, no KeyError; the pass ends
    assert ring.pass_done()
    assert list(ring.take(5)) == ["a"]
    ring.keep("a")
    # removed, then added again before the ring reached its old entry: visited once
    table["a"] = 3
    ring.removed("a")
    ring.added("a")
    assert list(ring.take(5)) == ["a"]
    assert len(ring) == 0


def test_registry_evicts_only_long_offline_records() -> None:
    reg = PeerRegistry(max_peers=10, evict_after=100.0)
    for i in range(6):
        rec = PeerRecord()
        rec.last_reg = 0.0 if i < 3 else 500.0
        reg.put(f"p{i}", rec)
    now = REG_TIMEOUT + 100.0 - 1.0
    assert reg.evict_step(now, 100) == 0  # the first three are not old enough yet
    assert reg.evict_step(now + 400, 2) == 2
    assert reg.evict_step(now + 400, 2) == 1
    assert sorted(pid for pid, _ in reg.items()) == ["p3", "p4", "p5"]


def test_full_registry_makes_room_from_offline_records_only() -> None:
    reg = PeerRegistry(max_peers=3)
    online = PeerRecord()
    online.last_reg = 1000.0
    reg.put("online", online)
    reg.put("old1", PeerRecord())
    reg.put("old2", PeerRecord())
    assert reg.has_room(1001.0)  # offline records make room
    assert "online" in reg and len(reg) == 1
    for name in ("b", "c"):
        rec = PeerRecord()
        rec.last_reg = 1000.0
        reg.put(name, rec)
    assert not reg.has_room(1001.0)  # everyone is online: no room, nobody evicted
    assert len(reg) == 3


def test_blocker_table_is_bounded_and_pruned() -> None:
    blocker = IpBlocker(BlockerLimits(max_entries=3))
    for i in range(3):
        assert blocker.allow(f"10.0.0.{i}", "id", 0.0)
    assert blocker.allow("10.0.0.9", "id", 1.0)  # full: the oldest entry made room
    assert len(blocker.entries) == 3 and "10.0.0.0" not in blocker.entries
    later = 86_400 + 2.0
    assert blocker.prune_step(later, 10) == 3 and len(blocker.entries) == 0


def test_ipv6_clients_share_a_blocker_entry_per_64() -> None:
    blocker = IpBlocker(BlockerLimits(burst=2))
    ips = [f"2001:db8:1:2::{i:x}" for i in range(1, 10)]
    results = [blocker.allow(ip, "id", 0.0) for ip in ips]
    assert results == [True, True, True, True, False, False, False, False, False]
    assert list(blocker.entries) == ["2001:db8:1:2::/64"]


def test_database_rows_do_not_overfill_a_full_table() -> None:
    from pyhbb.rendezvous.core import RendezvousCore
    from pyhbb.rendezvous.state import CoreSettings
    from pyhbb.rendezvous.stored_peer import StoredPeer

    core = RendezvousCore(CoreSettings(max_peers=1))
    state = core.state
    online = PeerRecord()
    online.last_reg = 100.0
    state.peers.put("online", online)
    results = []
    state.with_peer("stored99", 100.0, lambda rec, now, ok: results.append(rec) or [])
    row = StoredPeer(b"g" * 16, "stored99", b"u", b"k" * 32, "1.2.3.4")
    state.peer_loaded("stored99", row, 100.0)
    assert results[0] is not None and results[0].pk == b"k" * 32  # the answer uses it
    assert "stored99" not in state.peers and len(state.peers) == 1  # but does not keep it


def test_details_are_not_kept_and_reload_for_the_next_register_pk() -> None:
    from pyhbb.rendezvous.actions import LoadPeer, Persist, UpdatePeer
    from tests.rendezvous.helpers import (
        B_ADDR,
        B_ID,
        NO_REQUEST_PK,
        PK_A,
        REG_OK,
        T0,
        make_core,
        register_peer,
        register_pk,
        stored,
    )

    core = make_core()
    row = stored()
    # Loaded from the database for a RegisterPk: the details serve the decision only.
    assert core.on_udp(register_pk(), B_ADDR, T0) == [LoadPeer(B_ID)]
    assert core.peer_loaded(B_ID, row, T0)[0].payload == REG_OK  # type: ignore[union-attr]
    record = core.state.peers.get(B_ID)
    assert record is not None and record.details is None
    # Heartbeats need only the key and address, which stay.
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1)[0].payload == NO_REQUEST_PK  # type: ignore[union-attr]
    assert record.online(T0 + 1) and record.pk == PK_A
    # A key change reads them again; the same row (guid) is updated.
    later = T0 + 20
    assert core.on_udp(register_pk(pk=b"\x33" * 32), B_ADDR, later) == [LoadPeer(B_ID)]
    (persist,) = core.peer_loaded(B_ID, row, later)
    assert isinstance(persist, Persist)
    assert persist.write == UpdatePeer(row.guid, B_ID, b"\x33" * 32, B_ADDR[0])
    assert record.details is None


def test_online_count_comes_from_the_sweep_in_large_tables() -> None:
    from pyhbb.rendezvous import peer_registry

    reg = PeerRegistry()
    for i in range(10):
        rec = PeerRecord()
        rec.last_reg = 100.0 if i < 4 else -1000.0
        reg.put(f"p{i}", rec)
    assert reg.online_count(101.0) == 4  # small table: exact
    old, peer_registry.EXACT_COUNT_LIMIT = peer_registry.EXACT_COUNT_LIMIT, 5
    try:
        assert reg.online_count(101.0) == 0  # large: no sweep pass completed yet
        reg.evict_step(101.0, 6)
        assert reg.online_count(101.0) == 0  # pass still running
        reg.evict_step(101.0, 6)
        assert reg.online_count(101.0) == 4
    finally:
        peer_registry.EXACT_COUNT_LIMIT = old


def test_key_ring_keeps_order_across_chunks_and_out_of_the_gcs_sight() -> None:
    import gc

    from pyhbb.rendezvous.sweep import CHUNK

    n = CHUNK * 3 + 17
    table = {f"k{i}": i for i in range(n)}
    ring = KeyRing[str]()
    for key in table:
        ring.added(key)
    visited: list[str] = []
    while not ring.pass_done():
        for key in ring.take(500):
            visited.append(key)
            if table[key] % 3:
                ring.keep(key)
            else:
                del table[key]
    assert visited == [f"k{i}" for i in range(n)]  # once each, in insertion order
    assert len(ring) == len(table)
    second = [key for key in ring.take(n) for _ in [ring.keep(key)]]
    assert second == [f"k{i}" for i in range(n) if i % 3]
    gc.collect()
    # full chunks are tuples of strings, which the collector stops tracking
    assert ring._chunks and not any(gc.is_tracked(chunk) for chunk in ring._chunks)


def test_bounded_table_gives_room_back_once_mostly_empty() -> None:
    import sys

    from pyhbb.rendezvous.bounded_table import BoundedTable

    table: BoundedTable[str, int] = BoundedTable(100_000)
    for i in range(50_000):
        table[f"ip{i}"] = i
    grown = sys.getsizeof(table._map)
    assert table.sweep(50_000, lambda v: v >= 100) == 49_900  # the burst is over
    assert sys.getsizeof(table._map) < grown / 50  # the dict was rebuilt at its new size
    assert len(table) == 100 and table.get("ip7") == 7 and table["ip99"] == 99
    table["new"] = 1  # still a working table
    assert table.get("new") == 1 and table.sweep(1000, lambda v: False) == 0
