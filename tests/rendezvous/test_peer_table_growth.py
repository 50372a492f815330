"""The peer table grows without stalling the loop: it is made of many small dicts, so that
a growth copies a small share of the records, never the table (one dict of 699,050
records copied itself in one 80 ms step of a 1M warm start, issue 11 item 5). Counted:
the size of the largest dict, and the table's count against a reference through every
way in and out."""

from __future__ import annotations

import random

from pyhbb.rendezvous.peer_registry import REG_TIMEOUT, PeerRecord, PeerRegistry
from pyhbb.rendezvous.shards import SHARDS
from pyhbb.rendezvous.stored_peer import StoredPeer

PK = bytes(range(32))
T0 = 1_000_000.0


def row(peer_id: str) -> StoredPeer:
    return StoredPeer(b"g" * 16, peer_id, b"u" * 16, PK, "192.0.2.7")


def test_no_single_dict_holds_more_than_a_small_share_of_the_records() -> None:
    registry = PeerRegistry()
    n = 100_000
    rows = [(f"{500_000_000 + i}", PK, f"10.0.{i >> 8 & 255}.{i & 255}") for i in range(n)]
    for start in range(0, n, 512):  # as the warm start enters them
        registry.add_rows(rows[start : start + 512], T0, n)
    assert len(registry) == n
    # one dict was 100,000 records; evenly spread, a shard holds n / SHARDS (~390)
    assert registry.largest_dict <= 2 * n // SHARDS
    assert all(registry.online(peer_id, T0 + 1) for peer_id, _, _ in rows[:100])


def test_the_count_follows_every_way_in_and_out() -> None:
    rnd = random.Random(7)
    registry = PeerRegistry(max_peers=10_000, evict_after=0.0)
    present: set[str] = set()
    now = T0
    for step in range(20_000):
        peer_id = f"peer{rnd.randrange(3000)}"
        op = rnd.randrange(6)
        if op == 0 and peer_id not in present:
            registry.add_stored(peer_id, row(peer_id), last_reg=now)
            present.add(peer_id)
        elif op == 1:
            registry.put(peer_id, PeerRecord(b"g", b"u", PK, "192.0.2.8"))
            present.add(peer_id)
        elif op == 2:
            registry.remove(peer_id)
            present.discard(peer_id)
        elif op == 3:
            new_id = f"peer{rnd.randrange(3000)}"
            if peer_id in present and new_id != peer_id:
                registry.rename(peer_id, new_id)
                present.discard(peer_id)
                present.add(new_id)
        elif op == 4:
            entered = registry.add_rows([(peer_id, PK, "192.0.2.9")], now, 10_000)
            assert entered == (peer_id not in present)
            present.add(peer_id)
        else:  # records offline long enough are evicted by the sweep
            for record_id in present:
                record = registry.get(record_id)
                assert record is not None
                del record
            now += REG_TIMEOUT + 1
            evicted = registry.evict_step(now, 4096)
            assert evicted == len(present)  # objects nobody holds, all offline: all gone
            present.clear()
        if step % 500 == 0:
            assert len(registry) == len(present)
            assert set(registry.ids()) == present
    assert len(registry) == len(present) and set(registry.ids()) == present
