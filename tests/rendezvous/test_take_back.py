"""Restart without an outage (issue 11): a heartbeat for a peer that the database holds
but memory does not is decided from its stored record, by the in-memory rule of §6.3,
instead of asking every returning client for a RegisterPk."""

from __future__ import annotations

from pyhbb.rendezvous.actions import Action, LoadPeer, SendUdp
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.state import MAX_TAKE_BACK_LOADS
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    DB_DOWN,
    NO_REQUEST_PK,
    PK_B,
    REQUEST_PK,
    T0,
    make_core,
    punch_request,
    register_peer,
    resolve,
    stored,
    tcp,
    udp_replies,
)
from tests.rendezvous.test_flood_core import sprayed


def loads(actions: list[Action]) -> list[str]:
    return [a.peer_id for a in actions if isinstance(a, LoadPeer)]


def test_peer_from_its_recorded_ip_is_taken_back_without_register_pk() -> None:
    core = make_core()
    src = (B_ADDR[0], 41000)  # the NAT gave it a new port: the IP on record is what counts
    actions = core.on_udp(register_peer(), src, T0)
    assert loads(actions) == [B_ID]  # nothing answered before the record is read
    assert core.peer_loaded(B_ID, stored(ip=B_ADDR[0], pk=PK_B), T0) == [
        SendUdp(NO_REQUEST_PK, src)
    ]
    peers = core.state.peers
    assert peers.online(B_ID, T0) and not peers.online(B_ID, T0 + 30)
    assert peers.objects == 0  # kept compact: no object per returning peer
    record = peers.get(B_ID)
    assert record is not None and record.addr == src and record.pk == PK_B
    # from now on the record is in memory: no more reads
    assert core.on_udp(register_peer(), src, T0 + 15) == [SendUdp(NO_REQUEST_PK, src)]
    # and punch requests reach it at the address of its heartbeat
    (_, addr), *_ = udp_replies(core.on_frame(tcp(), punch_request(), T0 + 16))
    assert addr == src


def test_heartbeat_from_another_ip_gets_request_pk_as_before() -> None:
    core = make_core()
    stranger = ("192.0.2.99", 50000)
    actions = core.on_udp(register_peer(), stranger, T0)
    assert core.peer_loaded(B_ID, stored(ip=B_ADDR[0]), T0) == [SendUdp(REQUEST_PK, stranger)]
    assert not core.state.peers.online(B_ID, T0)
    assert loads(actions) == [B_ID]
    # the record stays in memory (offline, IP on record unchanged): no second read
    assert core.on_udp(register_peer(), stranger, T0 + 3) == [SendUdp(REQUEST_PK, stranger)]
    assert core.state.peers.registered_ip(B_ID) == B_ADDR[0]


def test_stored_ip_in_dual_stack_form_counts_as_the_same_ip() -> None:
    core = make_core()
    core.on_udp(register_peer(), B_ADDR, T0)
    row = stored(ip="::ffff:" + B_ADDR[0])
    assert core.peer_loaded(B_ID, row, T0) == [SendUdp(NO_REQUEST_PK, B_ADDR)]


def test_row_without_key_or_with_garbage_ip_gets_request_pk() -> None:
    for row in (stored(pk=b""), stored(ip="not an ip"), stored(ip="")):
        core = make_core()
        core.on_udp(register_peer(), B_ADDR, T0)
        assert core.peer_loaded(B_ID, row, T0) == [SendUdp(REQUEST_PK, B_ADDR)], row


def test_database_down_answers_request_pk_and_reads_again_later() -> None:
    core = make_core()
    core.on_udp(register_peer(), B_ADDR, T0)
    assert core.peer_load_failed(B_ID, DB_DOWN, T0) == [SendUdp(REQUEST_PK, B_ADDR)]
    assert B_ID not in core.state.peers
    # a failure is not an absence: the next heartbeat tries the database again
    actions = core.on_udp(register_peer(), B_ADDR, T0 + 3)
    assert loads(actions) == [B_ID]
    assert core.peer_loaded(B_ID, stored(), T0 + 3) == [SendUdp(NO_REQUEST_PK, B_ADDR)]


def test_heartbeats_and_a_register_pk_of_one_id_share_one_read() -> None:
    core = make_core()
    first = core.on_udp(register_peer(), B_ADDR, T0)
    again = core.on_udp(register_peer(), B_ADDR, T0 + 0.001)  # a duplicate in flight
    assert loads(first) == [B_ID] and again == []
    assert core.peer_loaded(B_ID, stored(), T0) == [
        SendUdp(NO_REQUEST_PK, B_ADDR),
        SendUdp(NO_REQUEST_PK, B_ADDR),
    ]


def test_config_update_follows_a_taken_back_heartbeat_as_in_memory() -> None:
    core = make_core(serial=5)
    core.on_udp(register_peer(serial=3), B_ADDR, T0)
    replies = udp_replies(core.peer_loaded(B_ID, stored(), T0))
    assert replies[0][0] == NO_REQUEST_PK
    assert len(replies) == 2 and replies[1][1] == B_ADDR  # the ConfigUpdate


def test_unknown_ids_are_read_once_then_remembered() -> None:
    core = make_core()
    src = ("192.0.2.5", 40000)
    for i in range(100):
        actions = core.on_udp(register_peer(f"unknown{i:03d}"), src, T0)
        assert loads(actions) == [f"unknown{i:03d}"]
        assert core.peer_loaded(f"unknown{i:03d}", None, T0) == [SendUdp(REQUEST_PK, src)]
    for round_ in range(1, 5):  # every 15 s, as clients heartbeat; and across rotations
        now = T0 + 15 * round_
        core.on_timer(now)
        for i in range(100):
            actions = core.on_udp(register_peer(f"unknown{i:03d}"), src, now)
            assert actions == [SendUdp(REQUEST_PK, src)]
    assert core.state.pending_loads == 0 and len(core.state.peers) == 0


def test_forged_heartbeats_for_unknown_ids_read_at_the_budget_only() -> None:
    rate = 500.0
    core = make_core(take_back_reads_per_second=rate)
    reads = answered = 0
    now = T0
    seconds = 10
    for second in range(seconds):
        for k in range(5000):  # 5,000 forged heartbeats per second, every one a new id
            i = second * 5000 + k
            actions = core.on_udp(register_peer(f"forged{i:07d}"), sprayed(i), now)
            reads += len(loads(actions))
            answered += len(resolve(core, actions, now))
        core.on_timer(now)
        now += 1.0
    # the rate, one second of burst, and the retry lane's fifth
    assert reads <= rate * seconds + rate + rate / 5 * seconds, reads
    assert reads >= rate * seconds * 0.9  # and the budget is really used
    assert answered == reads  # over the budget: no answer (and no amplification)


def test_a_refused_genuine_heartbeat_gets_in_when_repeated() -> None:
    core = make_core(take_back_reads_per_second=100.0)
    now = T0
    for i in range(1000):  # the flood spends the whole budget
        resolve(core, core.on_udp(register_peer(f"forged{i:05d}"), sprayed(i), now), now)
    assert core.on_udp(register_peer(), B_ADDR, now) == []  # over budget: no answer
    # the client resends the same heartbeat from the same address 3 s later (§12)
    results = []
    for retry in range(1, 4):
        now += 3.0
        for i in range(1000):
            j = 1000 * retry + i
            resolve(core, core.on_udp(register_peer(f"forged{j:05d}"), sprayed(j), now), now)
        out = resolve(core, core.on_udp(register_peer(), B_ADDR, now), now, {B_ID: stored()})
        results.append(out)
        if out:
            break
    assert results[-1] == [SendUdp(NO_REQUEST_PK, B_ADDR)], results
    assert core.state.peers.online(B_ID, now)


def test_pending_reads_are_bounded() -> None:
    core = make_core(take_back_reads_per_second=1e9)
    pending: list[str] = []
    now = T0
    for i in range(MAX_TAKE_BACK_LOADS + 100):
        pending += loads(core.on_udp(register_peer(f"waiting{i:06d}"), sprayed(i), now))
    assert len(pending) == MAX_TAKE_BACK_LOADS == core.state.pending_loads
    assert core.state.stats["heartbeat_lookup_queue_full"] == 100
    # room is left for RegisterPk and punch look-ups
    assert loads(core.on_frame(tcp(), punch_request(), now)) == [B_ID]


def test_short_or_malformed_ids_are_never_read() -> None:
    core = make_core()
    for peer_id in ("12345", "x" * 101, "bad\nid"):
        actions = core.on_udp(register_peer(peer_id), B_ADDR, T0)
        assert actions == [SendUdp(REQUEST_PK, B_ADDR)], peer_id


def test_a_full_table_still_answers_but_keeps_nothing() -> None:
    core: RendezvousCore = make_core(max_peers=1)
    resolve(core, core.on_udp(register_peer("other0"), B_ADDR, T0), T0, {"other0": stored()})
    assert core.state.peers.online("other0", T0)
    core.on_udp(register_peer(), B_ADDR, T0)
    assert core.peer_loaded(B_ID, stored(), T0) == [SendUdp(REQUEST_PK, B_ADDR)]
    assert B_ID not in core.state.peers and len(core.state.peers) == 1


def test_preloaded_rows_answer_heartbeats_from_memory_and_leave_if_unclaimed() -> None:
    from pyhbb.rendezvous.state import PRELOAD_GRACE

    core = make_core()
    rows = [stored(peer_id=f"peer{i:03d}", ip=f"192.0.2.{i}") for i in range(1, 51)]
    assert core.state.preload(rows, T0, limit=40) == 40  # the limit keeps room for new peers
    peers = core.state.peers
    assert len(peers) == 40 and not peers.online("peer001", T0)
    src = ("192.0.2.1", 41000)
    assert core.on_udp(register_peer("peer001"), src, T0 + 1) == [SendUdp(NO_REQUEST_PK, src)]
    stranger = ("198.51.100.1", 41000)  # the IP on record still counts
    assert core.on_udp(register_peer("peer002"), stranger, T0 + 1) == [
        SendUdp(REQUEST_PK, stranger)
    ]
    # a record in memory is never replaced by a preloaded row
    assert core.state.preload([stored(peer_id="peer001", ip="203.0.113.9")], T0 + 2, 100) == 0
    assert peers.registered_ip("peer001") == "192.0.2.1"
    # unclaimed rows are evicted after the grace; the claimed one stays
    for second in range(int(PRELOAD_GRACE) + 62):
        core.on_timer(T0 + 2 + second)
        if second % 15 == 0:
            core.on_udp(register_peer("peer001"), src, T0 + 2 + second)
    assert "peer001" in peers and len(peers) == 1
