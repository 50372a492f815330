"""RegisterPeer over UDP, B's 15-second heartbeat (docs/protocol.md §6.3)."""

from __future__ import annotations

from pyhbb.rendezvous.actions import LoadPeer, SendUdp
from tests.rendezvous.helpers import (
    B_ADDR,
    B_ID,
    NO_REQUEST_PK,
    PK_A,
    REQUEST_PK,
    T0,
    bring_online,
    decode,
    make_core,
    punch_request,
    reg,
    register_peer,
    resolve,
    stored,
    tcp,
    udp_replies,
)


def online(core, peer_id: str, now: float) -> bool:
    record = core.state.peers.get(peer_id)
    return record is not None and record.online(now)


def test_spec_vector_request_bytes_unknown_id_gets_request_pk() -> None:
    core = make_core()
    data = bytes.fromhex("320b0a09313233343536373839")  # §14.3 RegisterPeer{id, serial=0}
    # not in memory: looked up in the (empty) database first, then the same answer
    assert reg(core, data, B_ADDR, T0) == [SendUdp(REQUEST_PK, B_ADDR)]
    # No record is created by RegisterPeer (RegisterPk does it).
    assert core.state.peers.get(B_ID) is None
    assert len(core.state.peers) == 0


def test_unknown_id_costs_one_database_lookup_then_none() -> None:
    # Since the restart take-back (issue 11) an id not in memory is looked up once; an id
    # the database lacks is then remembered, so its heartbeats cost no more reads.
    core = make_core()
    actions = core.on_udp(register_peer("987654321"), B_ADDR, T0)
    assert actions == [LoadPeer("987654321")]
    assert core.peer_loaded("987654321", None, T0) == [SendUdp(REQUEST_PK, B_ADDR)]
    for i in range(1, 4):
        actions = core.on_udp(register_peer("987654321"), B_ADDR, T0 + 15 * i)
        assert actions == [SendUdp(REQUEST_PK, B_ADDR)]
    assert core.state.pending_loads == 0
    assert core.state.peers.get("987654321") is None  # RegisterPk creates records


def test_empty_id_gets_no_reply() -> None:
    core = make_core()
    assert core.on_udp(register_peer(""), B_ADDR, T0) == []


def test_known_peer_with_pk_refreshes_address_and_online_state() -> None:
    core = make_core()
    bring_online(core, T0)
    assert online(core, B_ID, T0 + 29.9)
    assert not online(core, B_ID, T0 + 30)  # REG_TIMEOUT is 30 s: now - last < 30
    new_port = (B_ADDR[0], 50001)
    actions = core.on_udp(register_peer(), new_port, T0 + 100)
    assert actions == [SendUdp(NO_REQUEST_PK, new_port)]
    record = core.state.peers.get(B_ID)
    assert record is not None
    assert record.addr == new_port
    assert record.last_reg == T0 + 100
    assert online(core, B_ID, T0 + 129.9)
    assert not online(core, B_ID, T0 + 130)


def test_heartbeat_address_is_where_punch_holes_go() -> None:
    core = make_core()
    bring_online(core, T0)
    new_port = (B_ADDR[0], 41234)
    core.on_udp(register_peer(), new_port, T0 + 15)
    actions = core.on_frame(tcp(), punch_request(), T0 + 16)
    (payload, addr), *_ = udp_replies(actions)
    assert addr == new_port
    assert decode(payload).WhichOneof("union") == "punch_hole"


def test_ip_change_requests_pk_and_does_not_update() -> None:
    core = make_core()
    bring_online(core, T0)
    moved = ("192.0.2.55", 50000)
    assert core.on_udp(register_peer(), moved, T0 + 15) == [SendUdp(REQUEST_PK, moved)]
    record = core.state.peers.get(B_ID)
    assert record is not None
    assert record.addr == B_ADDR  # nothing updated: RegisterPk will do it
    assert record.last_reg == T0


def test_port_change_on_same_ip_is_not_an_ip_change() -> None:
    core = make_core()
    bring_online(core, T0)
    assert core.on_udp(register_peer(), (B_ADDR[0], 1), T0 + 1) == [
        SendUdp(NO_REQUEST_PK, (B_ADDR[0], 1))
    ]


def test_loopback_sources_are_exempt_from_ip_change() -> None:
    # Adapters normalise ::ffff:127.0.0.1 to 127.0.0.1 at ingress; both forms of loopback
    # must be exempt (§6.3 quirk: normalise first).
    core = make_core()
    bring_online(core, T0)
    for i, src in enumerate([("127.0.0.1", 5000), ("127.8.9.10", 5001), ("::1", 5002)]):
        now = T0 + 1 + i
        assert core.on_udp(register_peer(), src, now) == [SendUdp(NO_REQUEST_PK, src)]
        record = core.state.peers.get(B_ID)
        assert record is not None
        assert record.addr == src
        assert record.last_reg == now


def test_record_without_pk_requests_pk() -> None:
    # A record that exists in memory but has no key (e.g. loaded from a row without pk).
    core = make_core()
    load = core.on_frame(tcp(), punch_request(), T0)
    resolve(core, load, T0, {B_ID: stored(pk=b"")})
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1) == [SendUdp(REQUEST_PK, B_ADDR)]


def test_db_loaded_peer_compares_with_info_ip_when_it_has_no_address() -> None:
    # A record loaded from the database (by a punch request) has no UDP address yet:
    # the IP-change test uses info.ip.
    core = make_core()
    resolve(core, core.on_frame(tcp(), punch_request(), T0), T0, {B_ID: stored(ip=B_ADDR[0])})
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1) == [SendUdp(NO_REQUEST_PK, B_ADDR)]
    assert online(core, B_ID, T0 + 1)

    core = make_core()
    resolve(core, core.on_frame(tcp(), punch_request(), T0), T0, {B_ID: stored(ip="192.0.2.1")})
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1) == [SendUdp(REQUEST_PK, B_ADDR)]
    assert not online(core, B_ID, T0 + 1)


def test_db_row_with_dual_stack_ip_text_is_not_an_ip_change() -> None:
    # §6.4 notes: info.ip may have been written as ::ffff:a.b.c.d by a dual-stack server;
    # compare after normalisation (§4.3), or such peers get request_pk forever (RegisterPk
    # then sees no change, answers OK without storing the address, and the loop repeats).
    core = make_core()
    row = stored(ip="::ffff:" + B_ADDR[0])
    resolve(core, core.on_frame(tcp(), punch_request(), T0), T0, {B_ID: row})
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1) == [SendUdp(NO_REQUEST_PK, B_ADDR)]
    assert online(core, B_ID, T0 + 1)


def test_config_update_only_when_server_serial_is_higher() -> None:
    servers = ["rs.example.com"]
    expected_cu = bytes.fromhex("72120805120e") + b"rs.example.com"  # §14.3
    core = make_core(serial=5, rendezvous_servers=servers)
    bring_online(core, T0)  # registered peers only, one per 30 s (issue 12)
    now = T0
    for serial in (0, 3, 4):
        now += 30
        assert core.on_udp(register_peer(serial=serial), B_ADDR, now) == [
            SendUdp(NO_REQUEST_PK, B_ADDR),
            SendUdp(expected_cu, B_ADDR),
        ]
    for serial in (5, 6):
        now += 30
        assert core.on_udp(register_peer(serial=serial), B_ADDR, now) == [
            SendUdp(NO_REQUEST_PK, B_ADDR)
        ]


def test_config_update_also_for_known_peers() -> None:
    core = make_core(serial=4, rendezvous_servers=["a.example", "b.example"])
    bring_online(core, T0)
    actions = core.on_udp(register_peer(serial=3), B_ADDR, T0 + 1)
    assert actions[0] == SendUdp(NO_REQUEST_PK, B_ADDR)
    cu = decode(actions[1].payload).configure_update  # type: ignore[union-attr]
    assert (cu.serial, list(cu.rendezvous_servers)) == (4, ["a.example", "b.example"])


def test_default_serial_zero_never_sends_config_update() -> None:
    core = make_core()
    assert reg(core, register_peer(serial=0), B_ADDR, T0) == [SendUdp(REQUEST_PK, B_ADDR)]


def test_self_test_id_gets_request_pk() -> None:
    # The watchdog's probe must get the normal answer (§6.3 note).
    core = make_core()
    assert reg(core, register_peer("(:test_hbbs:)"), ("127.0.0.1", 9), T0) == [
        SendUdp(REQUEST_PK, ("127.0.0.1", 9))
    ]
    # once found missing from the database, the probe (every second) is answered at once
    assert core.on_udp(register_peer("(:test_hbbs:)"), ("127.0.0.1", 9), T0 + 1) == [
        SendUdp(REQUEST_PK, ("127.0.0.1", 9))
    ]


def test_pk_of_registered_peer_survives_heartbeats() -> None:
    core = make_core()
    bring_online(core, T0)
    for i in range(1, 5):
        core.on_udp(register_peer(), B_ADDR, T0 + 15 * i)
    record = core.state.peers.get(B_ID)
    assert record is not None
    assert record.pk == PK_A
    assert online(core, B_ID, T0 + 60 + 29)
