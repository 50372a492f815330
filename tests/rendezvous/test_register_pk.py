"""RegisterPk over UDP: binding an ID to a machine and key (docs/protocol.md §6.4, §11)."""

from __future__ import annotations

from pyhbb.rendezvous.actions import InsertPeer, LoadPeer, Persist, SendUdp, UpdatePeer
from pyhbb.rendezvous.rate_limits import BlockerLimits
from pyhbb.rendezvous.stored_peer import StoredPeer
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    DB_DOWN,
    NO_REQUEST_PK,
    PK_A,
    PK_B,
    PUNCH_OFFLINE,
    REG_INVALID_ID,
    REG_OK,
    REG_SERVER_ERROR,
    REG_TOO_FREQUENT,
    REG_UUID_MISMATCH,
    T0,
    UUID,
    bring_online,
    loaded,
    make_core,
    punch_request,
    reg,
    register_peer,
    register_pk,
    resolve,
    row,
    sends,
    stored,
    tcp,
)

NEW_IP = ("192.0.2.99", 50000)


def record(core, peer_id: str = B_ID):
    r = core.state.peers.get(peer_id)
    assert r is not None
    return r


def test_spec_vector_new_peer_is_inserted_and_answered_after_the_write() -> None:
    core = make_core()
    # §14.3: RegisterPk{id="123456789", uuid="abc", pk=32x0x11}
    data = bytes.fromhex("7a320a0931323334353637383912036162631a20") + PK_A
    assert len(data) == 52
    first = core.on_udp(data, B_ADDR, T0)
    assert first == [LoadPeer(B_ID)]
    actions = core.peer_loaded(B_ID, None, T0)
    assert len(actions) == 1
    persist = actions[0]
    assert isinstance(persist, Persist)
    write = persist.write
    assert isinstance(write, InsertPeer)
    assert (write.peer_id, write.uuid, write.pk, write.ip) == (B_ID, b"abc", PK_A, B_ADDR[0])
    assert len(write.guid) == 16
    # The reply waits for the database: OK on success, SERVER_ERROR on failure (§13).
    assert persist.on_ok == [SendUdp(REG_OK, B_ADDR)]
    assert persist.on_fail == [SendUdp(REG_SERVER_ERROR, B_ADDR)]
    r = record(core)
    assert (r.pk, r.addr) == (PK_A, B_ADDR)
    assert resolve(core, actions, T0) == [SendUdp(REG_OK, B_ADDR)]
    assert row(core) == StoredPeer(write.guid, B_ID, b"abc", PK_A, B_ADDR[0])
    assert r.online(T0 + 29.9)
    assert not r.online(T0 + 30)


def test_empty_uuid_or_pk_gets_no_reply_and_no_lookup() -> None:
    core = make_core()
    assert core.on_udp(register_pk(uuid=b""), B_ADDR, T0) == []
    assert core.on_udp(register_pk(pk=b""), B_ADDR, T0) == []
    assert core.state.pending_loads == 0
    assert core.state.blocker.entries == {}


def test_id_shorter_than_six_utf8_bytes_is_uuid_mismatch() -> None:
    core = make_core()
    for short in ("", "1", "12345", "éé"):  # "éé" is 4 bytes
        assert reg(core, register_pk(short), B_ADDR, T0) == [SendUdp(REG_UUID_MISMATCH, B_ADDR)]
    assert core.state.pending_loads == 0
    # Six bytes are enough, even as three characters.
    assert core.on_udp(register_pk("ééé"), B_ADDR, T0) == [LoadPeer("ééé")]
    assert core.on_udp(register_pk("123456"), B_ADDR, T0) == [LoadPeer("123456")]


def test_short_ids_are_refused_before_the_ip_blocker_counts() -> None:
    core = make_core()
    for _ in range(50):
        core.on_udp(register_pk("12345"), B_ADDR, T0)
    assert core.on_udp(register_pk(), B_ADDR, T0) == [LoadPeer(B_ID)]


def test_absurd_ids_are_refused_with_invalid_id_format() -> None:
    # pyhbb follows the §6.4 recommendation: cap the length (DB column is varchar(100))
    # and refuse control characters; real client IDs are far shorter.
    core = make_core()
    assert reg(core, register_pk("1" * 101), B_ADDR, T0) == [SendUdp(REG_INVALID_ID, B_ADDR)]
    assert reg(core, register_pk("1234567\n"), B_ADDR, T0) == [SendUdp(REG_INVALID_ID, B_ADDR)]
    assert core.on_udp(register_pk("1" * 100), B_ADDR, T0) == [LoadPeer("1" * 100)]


def test_uuid_mismatch_when_the_id_belongs_to_another_machine() -> None:
    core = make_core()
    bring_online(core, T0)
    actions = core.on_udp(register_pk(uuid=b"other-machine", pk=PK_B), B_ADDR, T0 + 10)
    assert loaded(core, actions, T0 + 10) == [SendUdp(REG_UUID_MISMATCH, B_ADDR)]
    assert (row(core).uuid, record(core).pk) == (UUID, PK_A)


def test_uuid_mismatch_when_same_uuid_has_new_key_and_new_ip() -> None:
    core = make_core()
    bring_online(core, T0)
    actions = core.on_udp(register_pk(pk=PK_B), NEW_IP, T0 + 10)
    assert loaded(core, actions, T0 + 10) == [SendUdp(REG_UUID_MISMATCH, NEW_IP)]
    r = record(core)
    assert (r.pk, row(core).ip, r.addr) == (PK_A, B_ADDR[0], B_ADDR)


def test_key_change_from_same_ip_updates_the_row() -> None:
    core = make_core()
    bring_online(core, T0)
    guid = row(core).guid
    actions = loaded(core, core.on_udp(register_pk(pk=PK_B), (B_ADDR[0], 1234), T0 + 10), T0 + 10)
    assert len(actions) == 1
    persist = actions[0]
    assert isinstance(persist, Persist)
    assert persist.write == UpdatePeer(guid, B_ID, PK_B, B_ADDR[0])
    assert persist.on_ok == [SendUdp(REG_OK, (B_ADDR[0], 1234))]
    assert persist.on_fail == [SendUdp(REG_SERVER_ERROR, (B_ADDR[0], 1234))]
    r = record(core)
    assert (r.pk, r.addr, r.last_reg) == (PK_B, (B_ADDR[0], 1234), T0 + 10)
    assert core.state.ip_changes.entries == {}


def test_ip_change_with_same_key_updates_info_ip_and_records_ip_change() -> None:
    core = make_core()
    bring_online(core, T0)
    guid = row(core).guid
    actions = loaded(core, core.on_udp(register_pk(), NEW_IP, T0 + 10), T0 + 10)
    persist = actions[0]
    assert isinstance(persist, Persist)
    assert persist.write == UpdatePeer(guid, B_ID, PK_A, NEW_IP[0])
    r = record(core)
    assert (r.addr, r.last_reg) == (NEW_IP, T0 + 10)
    entry = core.state.ip_changes.entries[B_ID]
    assert entry.ips == {NEW_IP[0]: 1}


def test_no_change_is_ok_at_once_without_persist_and_without_refreshing_last_reg() -> None:
    core = make_core()
    bring_online(core, T0)
    other_port = (B_ADDR[0], 60000)
    assert reg(core, register_pk(), other_port, T0 + 20) == [SendUdp(REG_OK, other_port)]
    r = record(core)
    assert r.last_reg == T0
    assert r.addr == B_ADDR
    assert not r.online(T0 + 30)


def test_db_loaded_peer_is_offline_until_it_registers() -> None:
    core = make_core()
    row = stored(ip=B_ADDR[0])
    assert core.on_udp(register_pk(), B_ADDR, T0) == [LoadPeer(B_ID)]
    assert core.peer_loaded(B_ID, row, T0) == [SendUdp(REG_OK, B_ADDR)]
    r = record(core)
    assert not r.online(T0)
    assert r.pk == row.pk
    # A punch request now finds it offline ...
    link = tcp()
    assert sends(core.on_frame(link, punch_request(), T0 + 1)) == [(link, PUNCH_OFFLINE)]
    # ... until the next heartbeat.
    assert core.on_udp(register_peer(), B_ADDR, T0 + 2) == [SendUdp(NO_REQUEST_PK, B_ADDR)]
    assert r.online(T0 + 2)


def test_db_loaded_peer_with_new_ip_updates_its_row_and_comes_online() -> None:
    core = make_core()
    row = stored(ip="192.0.2.1", guid=b"R" * 16)
    core.on_udp(register_pk(), B_ADDR, T0)
    actions = core.peer_loaded(B_ID, row, T0)
    persist = actions[0]
    assert isinstance(persist, Persist)
    assert persist.write == UpdatePeer(b"R" * 16, B_ID, PK_A, B_ADDR[0])
    assert record(core).online(T0)


def test_db_row_with_other_uuid_is_uuid_mismatch() -> None:
    core = make_core()
    core.on_udp(register_pk(), B_ADDR, T0)
    actions = core.peer_loaded(B_ID, stored(uuid=b"someone-else"), T0)
    assert actions == [SendUdp(REG_UUID_MISMATCH, B_ADDR)]


def test_dual_stack_ip_in_db_row_equals_plain_ipv4() -> None:
    # §6.4 notes: an official server on a dual-stack socket stored "::ffff:1.2.3.4".
    core = make_core()
    core.on_udp(register_pk(), B_ADDR, T0)
    row = stored(ip="::ffff:" + B_ADDR[0])
    assert core.peer_loaded(B_ID, row, T0) == [SendUdp(REG_OK, B_ADDR)]  # no change
    assert core.state.ip_changes.entries == {}
    # A new key from the "same" IP is a key change, not a hijack attempt.
    assert core.on_udp(register_pk(pk=PK_B), B_ADDR, T0 + 1) == [LoadPeer(B_ID)]
    actions = core.peer_loaded(B_ID, row, T0 + 1)
    persist = actions[0]
    assert isinstance(persist, Persist)
    assert persist.write == UpdatePeer(row.guid, B_ID, PK_B, B_ADDR[0])


def test_dual_stack_db_row_peer_can_come_online_by_heartbeat() -> None:
    # The full client cycle against such a row: RegisterPk (no change), then RegisterPeer
    # must not ask for the key again.
    core = make_core()
    core.on_udp(register_pk(), B_ADDR, T0)
    core.peer_loaded(B_ID, stored(ip="::ffff:" + B_ADDR[0]), T0)
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1) == [SendUdp(NO_REQUEST_PK, B_ADDR)]
    assert record(core).online(T0 + 1)


def test_persist_failure_evicts_the_record_so_it_reloads() -> None:
    core = make_core()
    actions = resolve(core, core.on_udp(register_pk(), B_ADDR, T0), T0, persist_ok=False)
    assert actions == [SendUdp(REG_SERVER_ERROR, B_ADDR)]
    assert core.state.peers.get(B_ID) is None
    # The next attempt goes back to the database.
    assert core.on_udp(register_pk(), B_ADDR, T0 + 10) == [LoadPeer(B_ID)]


def test_failed_update_evicts_the_record_too() -> None:
    core = make_core()
    bring_online(core, T0)
    actions = resolve(core, core.on_udp(register_pk(pk=PK_B), B_ADDR, T0 + 1), T0 + 1, {}, False)
    assert actions == [SendUdp(REG_SERVER_ERROR, B_ADDR)]
    assert core.state.peers.get(B_ID) is None
    # Reload shows the database's truth (the old key), and the client's retry updates it.
    assert core.on_udp(register_pk(pk=PK_B), B_ADDR, T0 + 10) == [LoadPeer(B_ID)]
    actions = core.peer_loaded(B_ID, stored(pk=PK_A, guid=b"D" * 16), T0 + 10)
    persist = actions[0]
    assert isinstance(persist, Persist)
    assert persist.write == UpdatePeer(b"D" * 16, B_ID, PK_B, B_ADDR[0])


def test_db_read_failure_is_server_error() -> None:
    core = make_core()
    assert core.on_udp(register_pk(), B_ADDR, T0) == [LoadPeer(B_ID)]
    assert core.peer_load_failed(B_ID, DB_DOWN, T0) == [SendUdp(REG_SERVER_ERROR, B_ADDR)]
    assert core.state.peers.get(B_ID) is None
    assert core.state.pending_loads == 0


def test_concurrent_registrations_share_one_load_and_see_each_other() -> None:
    core = make_core()
    other = ("192.0.2.7", 7)
    assert core.on_udp(register_pk(), B_ADDR, T0) == [LoadPeer(B_ID)]
    assert core.on_udp(register_pk(uuid=b"thief"), other, T0) == []  # waits for the same load
    assert core.state.pending_loads == 1
    actions = core.peer_loaded(B_ID, None, T0)
    assert len(actions) == 2
    assert isinstance(actions[0], Persist)
    assert actions[0].on_ok == [SendUdp(REG_OK, B_ADDR)]
    # The second waiter sees the record the first one created.
    assert actions[1] == SendUdp(REG_UUID_MISMATCH, other)


# -- per-ID limit (§6.4 step 6, §11.4) ---------------------------------------------------


def test_per_id_limit_three_per_burst_then_reset_after_seven_seconds() -> None:
    core = make_core()
    bring_online(core, T0)  # accepted #1 at T0
    assert reg(core, register_pk(), B_ADDR, T0 + 1) == [SendUdp(REG_OK, B_ADDR)]  # 2
    assert reg(core, register_pk(), B_ADDR, T0 + 2) == [SendUdp(REG_OK, B_ADDR)]  # 3
    assert reg(core, register_pk(), B_ADDR, T0 + 3) == [SendUdp(REG_TOO_FREQUENT, B_ADDR)]
    # Refusals do not move the window: still counted from the last accepted one (T0+2).
    assert reg(core, register_pk(), B_ADDR, T0 + 8.99) == [SendUdp(REG_TOO_FREQUENT, B_ADDR)]
    assert reg(core, register_pk(), B_ADDR, T0 + 9) == [SendUdp(REG_OK, B_ADDR)]
    assert reg(core, register_pk(), B_ADDR, T0 + 9) == [SendUdp(REG_OK, B_ADDR)]
    assert reg(core, register_pk(), B_ADDR, T0 + 9) == [SendUdp(REG_OK, B_ADDR)]
    assert reg(core, register_pk(), B_ADDR, T0 + 9) == [SendUdp(REG_TOO_FREQUENT, B_ADDR)]


def test_per_id_limit_six_whole_seconds_are_not_enough() -> None:
    core = make_core()
    bring_online(core, T0)
    reg(core, register_pk(), B_ADDR, T0)
    reg(core, register_pk(), B_ADDR, T0)
    assert reg(core, register_pk(), B_ADDR, T0 + 6.999) == [SendUdp(REG_TOO_FREQUENT, B_ADDR)]
    assert reg(core, register_pk(), B_ADDR, T0 + 7.0) == [SendUdp(REG_OK, B_ADDR)]


def test_per_id_limit_refuses_changes_too() -> None:
    core = make_core()
    bring_online(core, T0)
    reg(core, register_pk(), B_ADDR, T0)
    reg(core, register_pk(), B_ADDR, T0)
    assert reg(core, register_pk(pk=PK_B), B_ADDR, T0 + 1) == [SendUdp(REG_TOO_FREQUENT, B_ADDR)]
    assert record(core).pk == PK_A


def test_uuid_mismatches_do_not_use_up_the_owner_budget() -> None:
    core = make_core()
    bring_online(core, T0)
    for i in range(5):
        src = (f"192.0.2.{i + 1}", 1)
        assert reg(core, register_pk(uuid=b"x"), src, T0 + 1) == [SendUdp(REG_UUID_MISMATCH, src)]
    assert reg(core, register_pk(), B_ADDR, T0 + 1) == [SendUdp(REG_OK, B_ADDR)]


# -- IP blocker through the core (§11.1; the table itself is tested in test_rate_limits) ----


def _fresh(core, ids: range, src: tuple[str, int], now: float) -> list[bytes]:
    out = []
    for i in ids:
        actions = resolve(core, core.on_udp(register_pk(f"peer{i:05d}"), src, now), now)
        assert len(actions) == 1
        assert isinstance(actions[0], SendUdp)
        out.append(actions[0].payload)
    return out


def test_ip_blocker_32_per_burst_then_too_frequent_until_61_seconds() -> None:
    core = make_core()
    src = ("198.51.100.1", 1000)
    assert _fresh(core, range(32), src, T0) == [REG_OK] * 32
    assert _fresh(core, range(32, 33), src, T0) == [REG_TOO_FREQUENT]
    assert _fresh(core, range(33, 34), src, T0 + 30) == [REG_TOO_FREQUENT]
    assert _fresh(core, range(34, 35), src, T0 + 60.999) == [REG_TOO_FREQUENT]
    assert _fresh(core, range(35, 36), src, T0 + 61) == [REG_OK]
    # Another IP is not affected.
    assert _fresh(core, range(100, 101), ("198.51.100.2", 1), T0) == [REG_OK]


def test_ip_blocker_limits_are_configurable() -> None:
    core = make_core(blocker=BlockerLimits(burst=2))
    src = ("198.51.100.1", 1000)
    assert _fresh(core, range(4), src, T0) == [REG_OK] * 4  # 1 free + counts 1, 2, 3
    assert _fresh(core, range(4, 5), src, T0) == [REG_TOO_FREQUENT]


def test_ip_blocker_refusal_happens_before_any_lookup() -> None:
    core = make_core()
    src = ("198.51.100.1", 1000)
    _fresh(core, range(32), src, T0)
    assert reg(core, register_pk("brandnew1"), src, T0) == [SendUdp(REG_TOO_FREQUENT, src)]
    assert core.state.pending_loads == 0
    assert core.state.peers.get("brandnew1") is None
