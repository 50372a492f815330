"""Rate limits and bounded tables (docs/protocol.md §11, §13), with injected time only."""

from __future__ import annotations

import pytest

from pyhbb.rendezvous import state as state_module
from pyhbb.rendezvous.actions import LoadPeer, Send, SendUdp
from pyhbb.rendezvous.rate_limits import (
    BlockerLimits,
    IpBlocker,
    IpChanges,
    PunchLog,
    pack_entry,
)
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    REG_OK,
    REG_SERVER_ERROR,
    REG_TOO_FREQUENT,
    T0,
    bring_online,
    decode,
    make_core,
    nat,
    punch_request,
    register_peer,
    register_pk,
    resolve,
    stored,
    tcp,
)
from tests.rendezvous.test_queries import online_request

IP = "198.51.100.1"

# -- IP_BLOCKER (§11.1) ----------------------------------------------------------------------


def test_blocker_first_request_is_free_and_its_id_not_recorded() -> None:
    b = IpBlocker()
    assert b.allow(IP, "first01", T0)
    entry = b.entry(IP)
    assert entry is not None and (entry.count, entry.ids) == (0, set())
    assert b.allow(IP, "second1", T0)
    entry = b.entry(IP)  # entries are immutable: the blocker stores a new one
    assert entry is not None and (entry.count, entry.ids) == (1, {"second1"})


def test_blocker_burst_of_32_then_refused_until_61_seconds_after_last_accepted() -> None:
    b = IpBlocker()
    assert all(b.allow(IP, "id00001", T0 + i * 0.5) for i in range(32))
    last = T0 + 31 * 0.5
    assert not b.allow(IP, "id00001", last)
    assert not b.allow(IP, "id00001", last + 30)  # refusals do not move t1
    assert not b.allow(IP, "id00001", last + 60.999)  # 60 whole seconds: not "more than 60"
    assert b.allow(IP, "id00001", last + 61)
    # After a reset the counter starts at 0 again: 31 more.
    assert all(b.allow(IP, "id00001", last + 61) for _ in range(30))
    assert not b.allow(IP, "id00001", last + 61)


def test_blocker_about_300_distinct_ids_per_ip() -> None:
    b = IpBlocker(BlockerLimits(burst=1_000_000))
    assert b.allow(IP, "first00", T0)  # free and not recorded
    for i in range(301):
        assert b.allow(IP, f"id{i:05d}", T0 + 1), i
    assert len(b.entry(IP).ids) == 301  # type: ignore[union-attr]
    assert not b.allow(IP, "new0001", T0 + 2)  # more than 300 ids: only known ones
    assert not b.allow(IP, "first00", T0 + 2)
    assert b.allow(IP, "id00007", T0 + 3)  # known: allowed, refreshes t2
    assert not b.allow(IP, "new0001", T0 + 3 + 86_400.999)
    assert b.allow(IP, "new0001", T0 + 3 + 86_401)  # set cleared after a silent day
    assert b.entry(IP).ids == {"new0001"}  # type: ignore[union-attr]


def test_blocker_busy_ip_never_clears_its_id_set() -> None:
    # §11.1 quirk kept: t2 is refreshed by every accepted request.
    b = IpBlocker(BlockerLimits(burst=1_000_000, max_ids=2))
    b.allow(IP, "a000001", T0)
    for name in ("b000001", "c000001", "d000001"):
        b.allow(IP, name, T0)
    now = T0
    for _ in range(3):
        now += 80_000
        assert b.allow(IP, "b000001", now)
    assert not b.allow(IP, "zzzzzz1", now + 1)


def test_blocker_other_ips_are_independent_and_ipv6_is_per_64() -> None:
    b = IpBlocker(BlockerLimits(burst=0))
    assert b.allow("2001:db8:1:2::1", "x000001", T0)
    assert b.allow("2001:db8:1:2::ffff", "x000001", T0)  # same /64: counted together
    assert not b.allow("2001:db8:1:2:aaaa::1", "x000001", T0)
    assert b.allow("2001:db8:1:3::1", "x000001", T0)  # another /64
    assert b.allow("192.0.2.1", "x000001", T0)
    assert b.allow("192.0.2.2", "x000001", T0)


def test_blocker_prune_drops_only_entries_with_both_windows_expired() -> None:
    b = IpBlocker()
    b.allow(IP, "x000001", T0)
    b.allow(IP, "x000001", T0)
    b.allow(IP, "x000002", T0)  # two ids: the IP is tracked for the whole day
    b.prune(T0 + 61)
    assert IP in b.entries  # the id window is still running
    b.prune(T0 + 86_400.5)
    assert IP in b.entries
    b.prune(T0 + 86_401)
    assert IP not in b.entries


def test_blocker_forgets_single_id_ips_after_the_burst_window() -> None:
    # pyhbb's deviation (see IpBlocker._expired): a million single-peer IPs must not each
    # hold a day-long entry.
    b = IpBlocker()
    b.allow(IP, "x000001", T0)
    b.allow(IP, "x000001", T0)
    b.prune(T0 + 60.5)
    assert IP in b.entries  # burst window still running
    b.prune(T0 + 61)
    assert IP not in b.entries


def test_blocker_table_is_bounded() -> None:
    # Full: a new source pushes out the oldest entry in O(1) instead of being refused (a
    # flood of forged sources must not lock genuine new sources out, issue 12).
    b = IpBlocker(BlockerLimits(max_entries=3, burst=0))
    for i in range(3):
        assert b.allow(f"192.0.2.{i}", "x000001", T0)
        assert b.allow(f"192.0.2.{i}", "x000001", T0)  # counted: the next one is refused
    assert b.allow("192.0.2.200", "x000001", T0 + 1)  # full: 192.0.2.0 is forgotten
    assert len(b.entries) == 3 and "192.0.2.0" not in b.entries
    assert not b.allow("192.0.2.1", "x000001", T0 + 1)  # the others keep their state
    assert b.allow("192.0.2.0", "x000001", T0 + 1)  # the forgotten one starts afresh
    assert len(b.entries) <= 3 and b.entries.evicted == 2


def test_timer_prunes_the_blocker() -> None:
    core = make_core()
    resolve(core, core.on_udp(register_pk(), B_ADDR, T0), T0)
    resolve(core, core.on_udp(register_pk("987654321"), B_ADDR, T0), T0)
    resolve(core, core.on_udp(register_pk("887654321"), B_ADDR, T0), T0)  # 2 ids recorded
    assert B_ADDR[0] in core.state.blocker.entries
    core.on_timer(T0 + 100)
    assert B_ADDR[0] in core.state.blocker.entries
    core.on_timer(T0 + 86_402)
    assert B_ADDR[0] not in core.state.blocker.entries


# -- IP_CHANGES (§11.2) ----------------------------------------------------------------------


def test_ip_changes_window_of_180_seconds() -> None:
    c = IpChanges()
    c.record(B_ID, "192.0.2.1", T0)
    c.record(B_ID, "192.0.2.2", T0 + 10)
    c.record(B_ID, "192.0.2.2", T0 + 180.9)
    assert c.entries[B_ID].ips == {"192.0.2.1": 1, "192.0.2.2": 2}
    assert c.entries[B_ID].t == T0  # not refreshed by increments
    c.record(B_ID, "192.0.2.3", T0 + 181)  # more than 180 whole seconds: reset
    assert c.entries[B_ID].ips == {"192.0.2.3": 1}
    assert c.entries[B_ID].t == T0 + 181


def test_ip_changes_are_bounded() -> None:
    c = IpChanges()
    for i in range(c.MAX_IPS + 10):
        c.record(B_ID, f"10.0.{i // 256}.{i % 256}", T0)
    assert len(c.entries[B_ID].ips) == c.MAX_IPS


def test_ip_changes_console_prune_and_timer_prune() -> None:
    c = IpChanges()
    c.record("single1", "192.0.2.1", T0)
    c.record("multi01", "192.0.2.1", T0)
    c.record("multi01", "192.0.2.2", T0)
    c.prune_step(T0 + 1, 1000)  # housekeeping only expires old entries
    assert set(c.entries) == {"single1", "multi01"}
    c.prune(T0 + 1)  # console rule: also entries with a single IP
    assert set(c.entries) == {"multi01"}
    c.prune(T0 + 360.9)
    assert set(c.entries) == {"multi01"}
    c.prune(T0 + 361)
    assert c.entries == {}


def test_ip_changes_recorded_by_register_pk_and_expired_by_the_timer() -> None:
    core = make_core()
    bring_online(core, T0)
    for i, ip in enumerate(["192.0.2.10", "192.0.2.11"]):
        now = T0 + 10 * (i + 1)
        resolve(core, core.on_udp(register_pk(), (ip, 1), now), now)
    assert core.state.ip_changes.entries[B_ID].ips == {"192.0.2.10": 1, "192.0.2.11": 1}
    core.on_timer(T0 + 200)
    assert B_ID in core.state.ip_changes.entries
    core.on_timer(T0 + 10 + 361)
    assert B_ID not in core.state.ip_changes.entries


# -- PUNCH_REQS (§11.3) ----------------------------------------------------------------------


def test_punch_log_duplicates_within_60_seconds() -> None:
    log = PunchLog()
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0)
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0 + 59.999)
    assert len(log.entries) == 1
    log.record("1.1.1.1", "9.9.9.9", B_ID, T0 + 59.999)  # same from_ip and to_id
    assert len(log.entries) == 1
    log.record("1.1.1.1", "2.2.2.2", "other01", T0 + 1)
    log.record("1.1.1.3", "2.2.2.2", B_ID, T0 + 1)
    assert len(log.entries) == 3
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0 + 60)
    assert len(log.entries) == 4
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0 + 61)  # the newest match decides
    assert len(log.entries) == 4


def test_punch_log_scans_only_the_newest_30() -> None:
    log = PunchLog()
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0)
    for i in range(29):
        log.record(f"10.0.0.{i}", "2.2.2.2", B_ID, T0)
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0 + 1)
    assert len(log.entries) == 30  # found within the 30 newest: duplicate
    log.record("10.0.0.99", "2.2.2.2", B_ID, T0)
    log.record("1.1.1.1", "2.2.2.2", B_ID, T0 + 1)
    assert len(log.entries) == 32  # now 31 back: not seen, appended


def test_punch_log_is_capped() -> None:
    log = PunchLog(cap=3)
    for i in range(5):
        log.record(f"10.0.0.{i}", "2.2.2.2", B_ID, T0 + i)
    assert [e.from_ip for _, e in log.entries] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert make_core().state.punch_log.entries.maxlen is not None


def test_punch_log_through_the_core() -> None:
    core = make_core()
    bring_online(core, T0)
    for dt in (1, 2, 30, 61, 62):
        core.on_udp(register_peer(), B_ADDR, T0 + dt)  # keep B online
        core.on_frame(tcp(), punch_request(), T0 + dt)
    assert [t for t, _ in core.state.punch_log.entries] == [T0 + 1, T0 + 61]


# -- pending loads ---------------------------------------------------------------------------


def test_pending_loads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "MAX_PENDING_LOADS", 2)
    core = make_core()
    assert core.on_udp(register_pk("peer001"), ("192.0.2.1", 1), T0) == [LoadPeer("peer001")]
    assert core.on_udp(register_pk("peer002"), ("192.0.2.2", 1), T0) == [LoadPeer("peer002")]
    src = ("192.0.2.3", 1)
    assert core.on_udp(register_pk("peer003"), src, T0) == [SendUdp(REG_SERVER_ERROR, src)]
    link = tcp()
    ((target, payload),) = [
        (a.link, a.payload) for a in core.on_frame(link, punch_request("p4x"), T0)
    ]
    assert target is link
    resp = decode(payload).punch_hole_response
    assert resp.socket_addr == b"" and resp.other_failure
    assert core.state.pending_loads == 2
    resolve(core, [LoadPeer("peer001")], T0)
    assert core.state.pending_loads == 1
    assert core.on_udp(register_pk("peer003"), src, T0) == [LoadPeer("peer003")]


def test_waiters_per_id_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "MAX_WAITERS_PER_ID", 2)
    core = make_core()
    links = [tcp() for _ in range(3)]
    assert core.on_frame(links[0], punch_request(), T0) == [LoadPeer(B_ID)]
    assert core.on_frame(links[1], punch_request(), T0) == []
    assert core.on_frame(links[2], punch_request(), T0) == []  # dropped: A retries later
    answered = [a.link for a in core.peer_loaded(B_ID, stored(), T0) if isinstance(a, Send)]
    assert answered == links[:2]


# -- OnlineRequest bound ---------------------------------------------------------------------


def test_online_request_beyond_the_limit_reports_offline_but_keeps_full_length() -> None:
    core = make_core(max_online_query=8)
    ids = [f"peer{i:04d}" for i in range(10)]
    for i, peer_id in enumerate(ids):
        bring_online(core, T0, peer_id=peer_id, addr=(f"192.0.2.{i + 1}", 1))
    (send, _) = core.on_nat_frame(nat(), online_request(ids), T0)
    assert decode(send.payload).online_response.states == b"\xff\x00"  # type: ignore[union-attr]


# -- peer registry ---------------------------------------------------------------------------


def test_timer_evicts_long_offline_records_which_then_reload() -> None:
    core = make_core(evict_after=100.0)
    bring_online(core, T0)
    core.on_timer(T0 + 130)
    assert B_ID in core.state.peers
    core.on_timer(T0 + 130.5)
    assert B_ID not in core.state.peers
    assert core.on_udp(register_pk(), B_ADDR, T0 + 200) == [LoadPeer(B_ID)]


def test_timer_keeps_online_and_session_peers() -> None:
    core = make_core(evict_after=0.0)
    bring_online(core, T0, peer_id="udp0001", addr=("192.0.2.1", 1))
    link = tcp(("192.0.2.2", 2))
    resolve(core, core.on_frame(link, register_pk("tcp0001"), T0), T0)
    core.on_timer(T0 + 29)
    assert "udp0001" in core.state.peers
    core.on_timer(T0 + 10_000)
    assert "udp0001" not in core.state.peers
    assert "tcp0001" in core.state.peers  # a live session is online whatever the time


def test_database_loaded_offline_records_are_evicted_by_the_timer() -> None:
    core = make_core()
    resolve(core, core.on_frame(tcp(), punch_request(), T0), T0, {B_ID: stored()})
    assert B_ID in core.state.peers
    core.on_timer(T0 + 1)
    assert B_ID not in core.state.peers


def test_full_registry_refuses_new_ids_until_an_offline_record_can_go() -> None:
    core = make_core(max_peers=2)
    bring_online(core, T0, peer_id="peer001", addr=("192.0.2.1", 1))
    bring_online(core, T0, peer_id="peer002", addr=("192.0.2.2", 1))
    assert not core.state.peers.has_room(T0 + 1)
    src = ("192.0.2.3", 1)
    actions = resolve(core, core.on_udp(register_pk("peer003"), src, T0 + 1), T0 + 1)
    assert actions == [SendUdp(REG_TOO_FREQUENT, src)]
    assert "peer003" not in core.state.peers
    # Known ids keep working while full; peer001's heartbeat keeps it online.
    src1 = ("192.0.2.1", 1)
    assert resolve(core, core.on_udp(register_pk("peer001"), src1, T0 + 20), T0 + 20) == [
        SendUdp(REG_OK, src1)
    ]
    core.on_udp(register_peer("peer001"), src1, T0 + 20)
    # peer002 goes offline (30 s): it is evicted to make room.
    actions = resolve(core, core.on_udp(register_pk("peer003"), src, T0 + 31), T0 + 31)
    assert actions == [SendUdp(REG_OK, src)]
    assert set(dict(core.state.peers.items())) == {"peer001", "peer003"}


# -- housekeeping slices ---------------------------------------------------------------------


def test_housekeeping_spreads_a_seconds_blocker_sweep_over_calls_that_come_sooner() -> None:
    """One second's share of every table at a million peers stalled the loop for 10-20 ms
    (bench/hbbs_stalls.py): a call that comes a tenth of a second after the last one looks
    at a tenth of the share (every entry here is stale, so entries dropped = entries
    looked at)."""
    core = make_core()
    entries = core.state.blocker.entries
    for i in range(120_000):
        entries[f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"] = pack_entry(1, T0, T0, None)
    core.on_timer(T0 + 100)  # the first call: a whole second's share (1/60 of the table)
    assert len(entries) == 120_000 - 2000
    core.on_timer(T0 + 100.1)
    assert 118_000 - len(entries) == 197  # a tenth of 118,000 / 60
    core.on_timer(T0 + 105)  # after a pause, no more than a second's share
    assert 117_803 - len(entries) == 117_803 // 60


def test_housekeeping_spreads_a_seconds_peer_sweep_over_calls_that_come_sooner() -> None:
    core = make_core(evict_after=0.0)
    peers = core.state.peers
    for i in range(6000):
        peers.add_stored(f"peer{i:05d}", stored(f"peer{i:05d}"))
    core.on_timer(T0)  # a second's share: 1000 records looked at, all long offline
    assert len(peers) == 5000
    core.on_timer(T0 + 0.1)
    assert len(peers) == 4900
    core.on_timer(T0 + 0.1)  # the same instant again: a small fixed slice still progresses
    assert len(peers) == 4900 - 64
