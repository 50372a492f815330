"""During a warm start, a heartbeat whose row is not in memory yet and for which no read
can be spared (the restart storm of issue 11 item 3: it used to get no answer) waits for
the scan to enter its row, and is decided then by the same rule as in memory (§6.3)."""

from __future__ import annotations

from pyhbb.rendezvous.actions import Action, LoadPeer, SendUdp
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.peer_registry import addr_key
from pyhbb.rendezvous.shards import SHARDS
from pyhbb.rendezvous.state import MAX_TAKE_BACK_LOADS
from pyhbb.rendezvous.stored_peer import CompactRow
from pyhbb.rendezvous.warm_waiters import WarmWaiters
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    NO_REQUEST_PK,
    PK_A,
    REQUEST_PK,
    T0,
    make_core,
    register_peer,
    udp_replies,
)

LIMIT = 1000
ROW_B: CompactRow = (B_ID, PK_A, B_ADDR[0])


def loads(actions: list[Action]) -> list[str]:
    return [a.peer_id for a in actions if isinstance(a, LoadPeer)]


def enter(core: RendezvousCore, rows: list[CompactRow], now: float) -> list[Action]:
    """What adapters/warm_start.py does with one slice of rows."""
    core.state.preload_rows(rows, now, LIMIT)
    return core.registration.warm_rows_entered(rows, now)


def warm_core(**settings: object) -> RendezvousCore:
    """A core during a warm start, with every take-back read it allows in flight."""
    core = make_core(**settings)
    core.registration.warm_start_began()
    for i in range(MAX_TAKE_BACK_LOADS):  # each from its own /24: the fair shares allow it
        src = (f"10.{i >> 8 & 255}.{i & 255}.1", 40000)
        assert loads(core.on_udp(register_peer(f"reading{i:05d}"), src, T0)) == [f"reading{i:05d}"]
    assert core.state.stats["heartbeat_warm_waits"] == 0
    return core


def test_heartbeat_waits_for_its_row_without_a_read_and_is_answered_when_it_comes() -> None:
    core = warm_core()
    src = (B_ADDR[0], 41000)  # a new port from the NAT: the IP on record is what counts
    assert core.on_udp(register_peer(), src, T0) == []  # no LoadPeer: no read of its own
    assert core.state.stats["heartbeat_warm_waits"] == 1
    other = [(f"other{i:04d}", PK_A, "192.0.2.1") for i in range(10)]
    assert enter(core, other, T0 + 1) == []  # rows of others answer nobody
    assert enter(core, [ROW_B], T0 + 2) == [SendUdp(NO_REQUEST_PK, src)]
    peers = core.state.peers
    assert peers.online(B_ID, T0 + 2) and peers.registered_ip(B_ID) == B_ADDR[0]
    record = peers.get(B_ID)
    assert record is not None and record.addr == src
    assert core.state.stats["heartbeat_warm_answered"] == 1
    assert enter(core, [ROW_B], T0 + 3) == []  # answered once


def test_heartbeat_from_another_ip_gets_request_pk_when_its_row_comes() -> None:
    core = warm_core()
    stranger = ("192.0.2.99", 50000)
    assert core.on_udp(register_peer(), stranger, T0) == []
    assert enter(core, [ROW_B], T0 + 1) == [SendUdp(REQUEST_PK, stranger)]
    assert not core.state.peers.online(B_ID, T0 + 1)
    assert core.state.peers.registered_ip(B_ID) == B_ADDR[0]  # unchanged
    assert core.state.stats["heartbeat_warm_answered"] == 0


def test_first_waiter_of_an_id_is_kept_and_a_later_one_is_not_answered() -> None:
    core = warm_core()
    stranger = ("192.0.2.99", 50000)
    assert core.on_udp(register_peer(), B_ADDR, T0) == []
    assert core.on_udp(register_peer(), stranger, T0 + 0.5) == []  # a forgery: no answer
    assert enter(core, [ROW_B], T0 + 1) == [SendUdp(NO_REQUEST_PK, B_ADDR)]


def test_config_update_follows_as_for_a_heartbeat_in_memory() -> None:
    core = warm_core(serial=5)
    core.on_udp(register_peer(serial=3), B_ADDR, T0)
    replies = udp_replies(enter(core, [ROW_B], T0 + 1))
    assert replies[0] == (NO_REQUEST_PK, B_ADDR)
    assert len(replies) == 2 and replies[1][1] == B_ADDR  # the ConfigUpdate


def test_row_beyond_the_limit_answers_request_pk_as_a_take_back_does() -> None:
    core = warm_core()
    core.on_udp(register_peer(), B_ADDR, T0)
    core.state.preload_rows([ROW_B], T0, 0)  # no room: the row is not entered
    assert core.registration.warm_rows_entered([ROW_B], T0) == [SendUdp(REQUEST_PK, B_ADDR)]
    assert B_ID not in core.state.peers


def test_full_waiting_table_leaves_the_heartbeat_unanswered_as_before() -> None:
    core = warm_core()
    waiters = core.registration.warm_waiters
    assert waiters is not None
    waiters.limit = 3
    for i in range(3):
        assert core.on_udp(register_peer(f"waiting{i}"), B_ADDR, T0) == []
    full = core.state.stats["heartbeat_lookup_queue_full"]
    assert core.on_udp(register_peer(), B_ADDR, T0) == []
    assert core.state.stats["heartbeat_lookup_queue_full"] == full + 1
    assert len(waiters) == 3 and enter(core, [ROW_B], T0 + 1) == []


def test_with_a_read_to_spare_the_heartbeat_is_taken_back_at_once() -> None:
    core = make_core()
    core.registration.warm_start_began()
    assert loads(core.on_udp(register_peer(), B_ADDR, T0)) == [B_ID]  # not parked
    assert core.state.stats["heartbeat_warm_waits"] == 0


def test_a_parked_id_taken_back_later_is_not_answered_twice() -> None:
    core = warm_core()
    assert core.on_udp(register_peer(), B_ADDR, T0) == []  # parked: no read to spare
    for i in range(MAX_TAKE_BACK_LOADS):  # the reads come back: capacity again
        core.peer_loaded(f"reading{i:05d}", None, T0 + 1)
    assert loads(core.on_udp(register_peer(), B_ADDR, T0 + 3)) == [B_ID]  # the resend
    assert enter(core, [ROW_B], T0 + 3.5) == []  # the scan's row answers nobody now
    assert core.peer_loaded(B_ID, None, T0 + 4) != []  # the read answers it


def test_after_the_warm_start_waiters_are_dropped_and_heartbeats_read_again() -> None:
    core = warm_core()
    assert core.on_udp(register_peer(), B_ADDR, T0) == []
    assert core.registration.warm_start_ended() == 1  # its row never came
    assert core.registration.warm_rows_entered([ROW_B], T0 + 1) == []


def test_no_parking_without_a_warm_start() -> None:
    core = warm_core()
    assert core.registration.warm_start_ended() == 0
    assert core.on_udp(register_peer(), B_ADDR, T0) == []  # unanswered, as before
    assert core.state.stats["heartbeat_warm_waits"] == 0
    assert core.state.stats["heartbeat_lookup_queue_full"] == 1


def test_waiters_keep_serial_and_address_exactly() -> None:
    waiters = WarmWaiters(limit=10)
    for serial in (0, 7, 2**31 - 1, -1, -(2**31)):
        key = addr_key(("2001:db8::1", 65535))
        assert waiters.park("someone", serial, key)
        assert waiters.claim(["nobody", "someone"]) == [("someone", serial, key)]
    assert waiters.claim(["someone"]) == []


def test_heartbeats_never_answered_count_as_unanswered_once_each() -> None:
    core = warm_core()
    unanswered = core.state.outcomes["heartbeat", "udp", "unanswered"]
    assert core.on_udp(register_peer(), B_ADDR, T0) == []  # parked: answered later
    assert core.state.outcomes["heartbeat", "udp", "unanswered"] == unanswered
    assert core.on_udp(register_peer(), B_ADDR, T0 + 3) == []  # its resend: never answered
    assert core.state.outcomes["heartbeat", "udp", "unanswered"] == unanswered + 1
    assert core.registration.warm_start_ended() == 1  # and the first, once the scan is over
    assert core.state.outcomes["heartbeat", "udp", "unanswered"] == unanswered + 2
    assert core.state.stats["heartbeat_warm_waits"] == 1


def test_waiters_are_counted_through_park_forget_and_claim_in_small_dicts() -> None:
    waiters = WarmWaiters(limit=50_000)
    key = addr_key(("192.0.2.1", 40000))
    for i in range(50_000):
        assert waiters.park(f"w{i}", i, key)
    assert not waiters.park("one-more", 0, key) and len(waiters) == 50_000
    assert waiters.park("w7", 99, key) and len(waiters) == 50_000  # the first one is kept
    # no single dict holds them all: growing one would copy it in one step (shards.py)
    assert max(len(shard) for shard in waiters._shards) <= 2 * 50_000 // SHARDS
    waiters.forget("w1")
    waiters.forget("w1")
    waiters.forget("never-parked")
    assert len(waiters) == 49_999 and "w1" not in waiters and "w2" in waiters
    claimed = waiters.claim(f"w{i}" for i in range(0, 50_000, 2))
    assert len(claimed) == 25_000 and ("w8", 8, key) in claimed and ("w7", 7, key) not in claimed
    assert len(waiters) == 24_999
    assert waiters.park("one-more", 0, key) and len(waiters) == 25_000
