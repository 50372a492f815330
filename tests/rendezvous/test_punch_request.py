"""PunchHoleRequest from A over TCP/WebSocket (docs/protocol.md §6.5, §6.6, §6.16, §6.17)."""

from __future__ import annotations

from pyhbb.rendezvous.actions import Close, LoadPeer, Send, SendUdp
from pyhbb.rendezvous.lan import LanPolicy
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    A_ADDR,
    B_ADDR,
    B_ID,
    DB_DOWN,
    PUNCH_ID_NOT_EXIST,
    PUNCH_LICENSE_MISMATCH,
    PUNCH_OFFLINE,
    T0,
    bring_online,
    decode,
    make_core,
    punch_request,
    register_peer,
    resolve,
    stored,
    tcp,
    udp_replies,
    ws,
)


def to_b(actions) -> pb.RendezvousMessage:
    """The single UDP message sent to B's registered address."""
    ((payload, addr),) = udp_replies(actions)
    assert addr == B_ADDR
    return decode(payload)


def punch_to_b(core, link, now: float = T0 + 1, **fields) -> pb.RendezvousMessage:
    return to_b(core.on_frame(link, punch_request(**fields), now))


# -- failures -------------------------------------------------------------------------------


def test_licence_mismatch_is_refused_before_any_lookup() -> None:
    core = make_core(enforced_key="K")
    bring_online(core, T0)
    for wrong in ("", "k", "KK", "OeVuKk5nlHiXp+APNn0Y3pC1Iwpwn44JGqrQCsWqmBw="):
        link = tcp()
        actions = core.on_frame(link, punch_request(licence_key=wrong), T0 + 1)
        assert actions == [Send(link, PUNCH_LICENSE_MISMATCH)]
    assert core.state.pending_loads == 0


def test_matching_licence_key_spec_vector_reaches_b() -> None:
    core = make_core(enforced_key="K")
    bring_online(core, T0)
    # §14.3: PunchHoleRequest{id="123456789", nat_type=ASYMMETRIC, licence_key="K",
    # version="1.4.2"}
    data = bytes.fromhex("42170a0931323334353637383910011a014b3205312e342e32")
    msg = to_b(core.on_frame(tcp(), data, T0 + 1))
    assert msg.WhichOneof("union") == "punch_hole"
    assert msg.punch_hole.nat_type == pb.ASYMMETRIC


def test_no_enforced_key_accepts_any_licence() -> None:
    core = make_core()
    bring_online(core, T0)
    assert punch_to_b(core, tcp(), licence_key="anything").WhichOneof("union") == "punch_hole"


def test_unknown_id_is_id_not_exist_after_the_database_says_so() -> None:
    core = make_core()
    link = tcp()
    assert core.on_frame(link, punch_request("111111111"), T0) == [LoadPeer("111111111")]
    assert core.peer_loaded("111111111", None, T0) == [Send(link, PUNCH_ID_NOT_EXIST)]
    assert core.state.peers.get("111111111") is None


def test_database_failure_is_a_failure_answer_with_text() -> None:
    # pyhbb's choice: a failure the client shows verbatim (other_failure, §6.6 notes).
    core = make_core()
    link = tcp()
    core.on_frame(link, punch_request("111111111"), T0)
    ((target, payload),) = [
        (a.link, a.payload) for a in core.peer_load_failed("111111111", DB_DOWN, T0)
    ]
    assert target is link
    resp = decode(payload).punch_hole_response
    assert resp.socket_addr == b""
    assert resp.failure == pb.PunchHoleResponse.ID_NOT_EXIST
    assert resp.other_failure


def test_offline_after_thirty_seconds_without_registration() -> None:
    core = make_core()
    bring_online(core, T0)
    assert punch_to_b(core, tcp(), T0 + 29.999).WhichOneof("union") == "punch_hole"
    link = tcp()
    assert core.on_frame(link, punch_request(), T0 + 30) == [Send(link, PUNCH_OFFLINE)]
    # A heartbeat brings it back.
    core.on_udp(register_peer(), B_ADDR, T0 + 40)
    assert punch_to_b(core, tcp(), T0 + 41).WhichOneof("union") == "punch_hole"


def test_database_only_peer_is_offline() -> None:
    core = make_core()
    link = tcp()
    assert core.on_frame(link, punch_request(), T0) == [LoadPeer(B_ID)]
    assert core.peer_loaded(B_ID, stored(), T0) == [Send(link, PUNCH_OFFLINE)]
    # Now in memory, still offline, no second database read.
    link2 = tcp()
    assert core.on_frame(link2, punch_request(), T0 + 1) == [Send(link2, PUNCH_OFFLINE)]


def test_failures_keep_the_connection_open() -> None:
    # Only A closes its punch connection; the server keeps reading (§6.5 table).
    core = make_core(enforced_key="K")
    link = tcp()
    assert not any(isinstance(a, Close) for a in core.on_frame(link, punch_request(), T0))


# -- PunchHole to B -------------------------------------------------------------------------


def test_punch_hole_spec_vector() -> None:
    # §14.3: PunchHole{socket_addr=mangle(203.0.113.7:50000, t=0x10212000),
    # relay_server="relay.example.com:21117", nat_type=ASYMMETRIC}
    core = make_core(mangle_time=lambda: 0x10212000, relay_servers=["relay.example.com:21117"])
    b_addr = ("192.0.2.200", 21000)
    bring_online(core, T0, addr=b_addr)
    a = tcp(("203.0.113.7", 50000))
    actions = core.on_frame(a, punch_request(nat_type=pb.ASYMMETRIC), T0 + 1)
    expected = (
        bytes.fromhex("4a270a0a50e3004042209641242f1217")
        + b"relay.example.com:21117"
        + bytes.fromhex("1801")
    )
    assert actions == [SendUdp(expected, b_addr)]


def test_punch_hole_carries_a_address_relay_and_nat_type() -> None:
    core = make_core(relay_servers=["relay.example.com"])
    bring_online(core, T0)
    for nat in (pb.UNKNOWN_NAT, pb.ASYMMETRIC, pb.SYMMETRIC):
        hole = punch_to_b(core, tcp(), nat_type=nat).punch_hole
        assert addr_mangle.decode(hole.socket_addr) == A_ADDR
        assert hole.relay_server == "relay.example.com"
        assert hole.nat_type == nat


def test_punch_hole_with_ipv6_requester_uses_18_byte_form() -> None:
    core = make_core()
    bring_online(core, T0)
    hole = punch_to_b(core, tcp(("2001:db8::5", 4000))).punch_hole
    assert len(hole.socket_addr) == 18
    assert addr_mangle.decode(hole.socket_addr) == ("2001:db8::5", 4000)


def test_no_relay_configured_gives_empty_relay_server() -> None:
    core = make_core()
    bring_online(core, T0)
    assert punch_to_b(core, tcp()).punch_hole.relay_server == ""


def test_relay_servers_rotate_round_robin() -> None:
    servers = ["r1.example:21117", "r2.example:21117", "r3.example:21117"]
    core = make_core(relay_servers=servers)
    bring_online(core, T0)
    picks = [punch_to_b(core, tcp()).punch_hole.relay_server for _ in range(7)]
    assert sorted(picks[:3]) == sorted(servers)
    assert picks[3:6] == picks[:3]
    assert picks[6] == picks[0]


def test_rotation_only_among_reachable_relays() -> None:
    core = make_core(relay_servers=["r1", "r2", "r3"])
    bring_online(core, T0)
    core.state.relays.set_reachable(["r3", "r1"])
    picks = {punch_to_b(core, tcp()).punch_hole.relay_server for _ in range(6)}
    assert picks == {"r1", "r3"}
    core.state.relays.set_reachable([])  # nothing reachable: keep the previous choice
    picks = {punch_to_b(core, tcp()).punch_hole.relay_server for _ in range(6)}
    assert picks == {"r1", "r3"}


def test_newer_fields_are_forwarded() -> None:
    core = make_core()
    bring_online(core, T0)
    v6 = addr_mangle.encode(("2001:db8::7", 21116))
    hole = punch_to_b(
        core, tcp(), force_relay=True, upnp_port=4321, socket_addr_v6=v6, udp_port=5555
    ).punch_hole
    assert hole.force_relay is True
    assert hole.upnp_port == 4321
    assert hole.socket_addr_v6 == v6
    assert hole.udp_port == 0  # UDP punching is off by default (§7.9)


def test_udp_port_forwarded_only_with_udp_punching() -> None:
    core = make_core(udp_punch=True)
    bring_online(core, T0)
    assert punch_to_b(core, tcp(), udp_port=5555).punch_hole.udp_port == 5555


def test_punch_request_is_logged_and_requester_registered() -> None:
    core = make_core()
    bring_online(core, T0)
    link = tcp()
    punch_to_b(core, link)
    assert core.state.requesters.take(A_ADDR) is link
    ((t, entry),) = core.state.punch_log.entries
    assert (t, entry.from_ip, entry.to_ip, entry.to_id) == (T0 + 1, A_ADDR[0], B_ADDR[0], B_ID)


def test_failed_requests_are_not_logged() -> None:
    core = make_core()
    link = tcp()
    resolve(core, core.on_frame(link, punch_request(), T0), T0, {B_ID: stored()})
    assert len(core.state.punch_log.entries) == 0


# -- same intranet and LAN rules ------------------------------------------------------------


def test_same_public_ip_gets_fetch_local_addr() -> None:
    core = make_core(relay_servers=["relay.example.com"])
    bring_online(core, T0)
    a = tcp((B_ADDR[0], 40001))
    v6 = addr_mangle.encode(("2001:db8::8", 1))
    msg = punch_to_b(core, a, nat_type=pb.ASYMMETRIC, socket_addr_v6=v6)
    assert msg.WhichOneof("union") == "fetch_local_addr"
    fetch = msg.fetch_local_addr
    assert addr_mangle.decode(fetch.socket_addr) == (B_ADDR[0], 40001)
    assert fetch.relay_server == "relay.example.com"
    assert fetch.socket_addr_v6 == v6


def test_same_public_ip_over_websocket_gets_punch_hole() -> None:
    core = make_core()
    bring_online(core, T0)
    msg = punch_to_b(core, ws((B_ADDR[0], 40001)), nat_type=pb.ASYMMETRIC)
    assert msg.WhichOneof("union") == "punch_hole"
    assert msg.punch_hole.nat_type == pb.ASYMMETRIC


def test_always_use_relay_forces_symmetric_even_on_the_same_intranet() -> None:
    # Deliberate deviation (punching.py): upstream still sends FetchLocalAddr to
    # same-intranet peers with ALWAYS_USE_RELAY, which does not force relay (§6.6 quirk).
    core = make_core(always_use_relay=True, relay_servers=["relay.example.com"])
    bring_online(core, T0)
    for link in (tcp(), tcp((B_ADDR[0], 40001))):
        msg = punch_to_b(core, link, nat_type=pb.ASYMMETRIC)
        assert msg.WhichOneof("union") == "punch_hole"
        assert msg.punch_hole.nat_type == pb.SYMMETRIC
        assert msg.punch_hole.relay_server == "relay.example.com"


MASK = "192.168.0.0/16"
LOCAL_IP = "192.168.1.1"
LAN_A = ("192.168.5.5", 40000)
LAN_B = ("192.168.7.7", 50000)


def lan_core(b_addr: tuple[str, int], **settings):
    core = make_core(mask=MASK, local_ip=LOCAL_IP, relay_servers=["relay.example.com"], **settings)
    bring_online(core, T0, addr=b_addr)
    return core


def to(core, link, b_addr, **fields) -> pb.RendezvousMessage:
    ((payload, addr),) = udp_replies(core.on_frame(link, punch_request(**fields), T0 + 1))
    assert addr == b_addr
    return decode(payload)


def test_mask_a_in_lan_b_outside_forces_relay_via_public_relay() -> None:
    core = lan_core(B_ADDR)
    hole = to(core, tcp(LAN_A), B_ADDR, nat_type=pb.ASYMMETRIC).punch_hole
    assert hole.nat_type == pb.SYMMETRIC
    assert hole.relay_server == "relay.example.com"


def test_mask_b_in_lan_a_outside_forces_relay_via_local_ip() -> None:
    core = lan_core(LAN_B)
    hole = to(core, tcp(A_ADDR), LAN_B, nat_type=pb.ASYMMETRIC).punch_hole
    assert hole.nat_type == pb.SYMMETRIC
    assert hole.relay_server == LOCAL_IP


def test_mask_both_in_lan_is_same_intranet() -> None:
    core = lan_core(LAN_B)
    msg = to(core, tcp(LAN_A), LAN_B, nat_type=pb.ASYMMETRIC)
    assert msg.WhichOneof("union") == "fetch_local_addr"
    assert addr_mangle.decode(msg.fetch_local_addr.socket_addr) == LAN_A
    assert msg.fetch_local_addr.relay_server == "relay.example.com"


def test_mask_both_in_lan_over_websocket_punches_with_a_nat_type() -> None:
    core = lan_core(LAN_B)
    hole = to(core, ws(LAN_A), LAN_B, nat_type=pb.ASYMMETRIC).punch_hole
    assert hole.nat_type == pb.ASYMMETRIC
    assert hole.relay_server == "relay.example.com"


def test_mask_both_outside_is_ordinary() -> None:
    core = lan_core(B_ADDR)
    hole = to(core, tcp(A_ADDR), B_ADDR, nat_type=pb.ASYMMETRIC).punch_hole
    assert hole.nat_type == pb.ASYMMETRIC
    assert hole.relay_server == "relay.example.com"


def test_mask_with_always_use_relay_and_lan_target_uses_local_ip() -> None:
    core = lan_core(LAN_B, always_use_relay=True)
    for a in (LAN_A, A_ADDR):
        msg = to(core, tcp(a), LAN_B, nat_type=pb.ASYMMETRIC)
        assert msg.WhichOneof("union") == "punch_hole"
        assert msg.punch_hole.nat_type == pb.SYMMETRIC
        assert msg.punch_hole.relay_server == LOCAL_IP


def test_lan_policy_matches_ipv4_and_convertible_ipv6_only() -> None:
    lan = LanPolicy(MASK, LOCAL_IP)
    assert lan.is_lan("192.168.0.1")
    assert lan.is_lan("192.168.255.255")
    assert not lan.is_lan("192.169.0.1")
    assert lan.is_lan("::ffff:192.168.3.4")
    assert lan.is_lan("::192.168.3.4")  # IPv4-compatible form converts too
    assert not lan.is_lan("2001:db8::1")
    assert not lan.is_lan("not an ip")
    assert not lan.is_lan("::1")  # 0.0.0.1 is not in the mask
    assert LanPolicy("0.0.0.0/8", "").is_lan("::1")  # no ::1 exception in is_lan (§6.17)
    assert not LanPolicy(None, "").is_lan("192.168.0.1")


# -- the requester table --------------------------------------------------------------------


def test_newer_link_under_same_key_survives_the_older_link_closing() -> None:
    core = make_core()
    bring_online(core, T0)
    old, new = tcp(), tcp()
    punch_to_b(core, old)
    punch_to_b(core, new)  # same address: replaces the entry
    core.on_link_closed(old, T0 + 2)
    assert core.state.requesters.take(A_ADDR) is new


def test_closing_the_registered_link_removes_it() -> None:
    core = make_core()
    bring_online(core, T0)
    link = tcp()
    punch_to_b(core, link)
    core.on_link_closed(link, T0 + 2)
    assert len(core.state.requesters) == 0


def test_requester_is_registered_even_when_the_request_fails() -> None:
    # The sink moves into the table on the first PunchHoleRequest whatever happens next.
    core = make_core()
    link = tcp()
    core.on_frame(link, punch_request(), T0)
    assert core.state.requesters.take(A_ADDR) is link
