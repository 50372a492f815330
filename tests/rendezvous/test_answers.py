"""B's answers reaching A, and A's RequestRelay (docs/protocol.md §5.4, §6.7-6.10)."""

from __future__ import annotations

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from pyhbb.rendezvous.actions import Close, LoadPeer, Send
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.message_pb2 import IdPk
from tests.rendezvous.helpers import (
    A_ADDR,
    B_ADDR,
    B_ID,
    PK_A,
    PK_B,
    SIGNED_IDPK_VECTOR,
    T0,
    bring_online,
    decode,
    make_core,
    punch_request,
    rm,
    sends,
    signing_key,
    stored,
    tcp,
    udp_replies,
    ws,
)

B_TCP = ("203.0.113.7", 61000)  # B's new connection to hbbs for its answer


def waiting_a(core, link=None):
    """Put A's link in the requester table with a punch request; B is online."""
    link = link or tcp()
    udp_replies(core.on_frame(link, punch_request(), T0 + 1))
    return link


def signed_core(**settings):
    core = make_core(signing=signing_key(), **settings)
    bring_online(core, T0)
    return core


def punch_hole_sent(a_addr=A_ADDR, **fields) -> bytes:
    return rm(
        punch_hole_sent=pb.PunchHoleSent(
            socket_addr=addr_mangle.encode(a_addr), id=fields.pop("id", B_ID), **fields
        )
    )


def one_answer(actions, a_link, b_link) -> pb.RendezvousMessage:
    assert actions[-1] == Close(b_link)
    ((target, payload),) = [(x.link, x.payload) for x in actions if isinstance(x, Send)]
    assert target is a_link
    assert len(actions) == 2
    return decode(payload)


def verify_idpk(signed: bytes, peer_id: str, pk: bytes) -> None:
    message = signing_key().verify_key.verify(signed)  # raises if the signature is bad
    idpk = IdPk()
    idpk.ParseFromString(message)
    assert idpk.id == peer_id
    assert idpk.pk == pk


# -- PunchHoleSent (§6.7) ---------------------------------------------------------------------


def test_punch_hole_sent_reaches_a_with_b_tcp_address_and_signed_pk() -> None:
    core = signed_core(relay_servers=["relay.example.com"])
    a = waiting_a(core)
    b = tcp(B_TCP)
    actions = core.on_frame(
        b,
        punch_hole_sent(relay_server="relay.b.example", nat_type=pb.ASYMMETRIC, version="1.4.2"),
        T0 + 2,
    )
    resp = one_answer(actions, a, b).punch_hole_response
    assert addr_mangle.decode(resp.socket_addr) == B_TCP
    assert resp.pk == SIGNED_IDPK_VECTOR  # §14.4: deterministic Ed25519
    verify_idpk(resp.pk, B_ID, PK_A)
    assert resp.relay_server == "relay.b.example"
    assert resp.WhichOneof("union") == "nat_type"
    assert resp.nat_type == pb.ASYMMETRIC
    assert resp.failure == 0 and resp.other_failure == ""


def test_signature_fails_with_another_key() -> None:
    core = signed_core()
    a = waiting_a(core)
    b = tcp(B_TCP)
    resp = one_answer(
        core.on_frame(b, punch_hole_sent(version="1.4.2"), T0 + 2), a, b
    ).punch_hole_response
    with pytest.raises(BadSignatureError):
        SigningKey(bytes(32)).verify_key.verify(resp.pk)


def test_unknown_nat_type_is_still_set_in_the_oneof() -> None:
    # §14.3: PunchHoleResponse{socket_addr=0102, nat_type=UNKNOWN_NAT} = 5a 06 0a 02 01 02 28 00.
    # With t = 0, B's address 0.0.0.0:513 mangles to exactly 01 02.
    core = make_core(mangle_time=lambda: 0)
    bring_online(core, T0)
    a = waiting_a(core)
    b = tcp(("0.0.0.0", 513))
    actions = core.on_frame(b, punch_hole_sent(nat_type=pb.UNKNOWN_NAT), T0 + 2)
    assert actions == [Send(a, bytes.fromhex("5a060a0201022800")), Close(b)]


def test_unknown_nat_type_value_is_not_forwarded() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    b = tcp(B_TCP)
    # PunchHoleSent with nat_type = 7 (not a NatType value), built by hand.
    mangled = addr_mangle.encode(A_ADDR)
    inner = bytes([0x0A, len(mangled)]) + mangled + b"\x12\x09" + B_ID.encode()
    inner += b"\x20\x07"
    data = b"\x52" + bytes([len(inner)]) + inner
    assert decode(data).punch_hole_sent.nat_type == 7
    resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).punch_hole_response
    assert resp.WhichOneof("union") is None


def test_no_signature_without_version() -> None:
    core = signed_core()
    a = waiting_a(core)
    b = tcp(B_TCP)
    actions = core.on_frame(b, punch_hole_sent(), T0 + 2)
    assert one_answer(actions, a, b).punch_hole_response.pk == b""


def test_no_signature_without_signing_key() -> None:
    core = make_core(enforced_key="some-public-key")  # -k <public key>: nothing is signed
    bring_online(core, T0)
    a = tcp()
    udp_replies(core.on_frame(a, punch_request(licence_key="some-public-key"), T0 + 1))
    b = tcp(B_TCP)
    actions = core.on_frame(b, punch_hole_sent(version="1.4.2"), T0 + 2)
    assert one_answer(actions, a, b).punch_hole_response.pk == b""


def test_signing_looks_b_up_in_the_database_when_not_in_memory() -> None:
    core = make_core(signing=signing_key())
    a = tcp()
    core.state.requesters.register(a)
    b = tcp(B_TCP)
    # B's connection is closed at once; the answer to A waits for the database.
    assert core.on_frame(b, punch_hole_sent(version="1.4.2"), T0) == [LoadPeer(B_ID), Close(b)]
    ((target, payload),) = sends(core.peer_loaded(B_ID, stored(pk=PK_B), T0))
    assert target is a
    resp = decode(payload).punch_hole_response
    verify_idpk(resp.pk, B_ID, PK_B)


def test_unknown_b_gets_no_signature() -> None:
    core = make_core(signing=signing_key())
    a = tcp()
    core.state.requesters.register(a)
    b = tcp(B_TCP)
    assert core.on_frame(b, punch_hole_sent(version="1.4.2"), T0) == [LoadPeer(B_ID), Close(b)]
    ((target, payload),) = sends(core.peer_loaded(B_ID, None, T0))
    assert target is a
    resp = decode(payload).punch_hole_response
    assert resp.pk == b""
    assert addr_mangle.decode(resp.socket_addr) == B_TCP


def test_answer_without_waiting_requester_is_dropped_and_b_closed() -> None:
    core = signed_core()
    b = tcp(B_TCP)
    assert core.on_frame(b, punch_hole_sent(version="1.4.2"), T0 + 2) == [Close(b)]


def test_one_answer_per_registration_of_a() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    b1, b2 = tcp(B_TCP), tcp(B_TCP)
    assert len(one_answer(core.on_frame(b1, punch_hole_sent(), T0 + 2), a, b1).ListFields()) == 1
    assert core.on_frame(b2, punch_hole_sent(), T0 + 3) == [Close(b2)]
    # A's retry on the same connection re-registers it (3 s / 6 s / 9 s resends, §6.6).
    waiting_a(core, a)
    one_answer(core.on_frame(b2, punch_hole_sent(), T0 + 4), a, b2)


def test_answers_reach_the_right_requester() -> None:
    core = make_core()
    bring_online(core, T0)
    a1 = waiting_a(core, tcp(("198.51.100.1", 1111)))
    a2 = waiting_a(core, ws(("198.51.100.2", 2222)))
    b = tcp(B_TCP)
    actions = core.on_frame(b, punch_hole_sent(a_addr=("198.51.100.2", 2222)), T0 + 2)
    one_answer(actions, a2, b)
    b = tcp(B_TCP)
    actions = core.on_frame(b, punch_hole_sent(a_addr=("198.51.100.1", 1111)), T0 + 2)
    one_answer(actions, a1, b)


def test_requester_key_is_normalised_from_mapped_ipv6_form() -> None:
    # §6.7 step 3: try_into_v4 of A's decoded address (here sent in the 18-byte form).
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    mapped = (
        bytes(10)
        + b"\xff\xff"
        + bytes(map(int, A_ADDR[0].split(".")))
        + (40000).to_bytes(2, "little")
    )
    b = tcp(B_TCP)
    data = rm(punch_hole_sent=pb.PunchHoleSent(socket_addr=mapped, id=B_ID))
    one_answer(core.on_frame(b, data, T0 + 2), a, b)


def test_ipv6_requester_is_found() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core, tcp(("2001:db8::5", 4000)))
    b = tcp(B_TCP)
    one_answer(core.on_frame(b, punch_hole_sent(a_addr=("2001:db8::5", 4000)), T0 + 2), a, b)


def test_closed_requester_gets_nothing() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    core.on_link_closed(a, T0 + 1.5)
    b = tcp(B_TCP)
    assert core.on_frame(b, punch_hole_sent(), T0 + 2) == [Close(b)]


def test_newer_fields_of_punch_hole_sent_are_forwarded() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    b = tcp(B_TCP)
    v6 = addr_mangle.encode(("2001:db8::9", 21116))
    data = punch_hole_sent(upnp_port=3333, socket_addr_v6=v6)
    resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).punch_hole_response
    assert (resp.upnp_port, resp.socket_addr_v6) == (3333, v6)


# -- LocalAddr (§6.8) ------------------------------------------------------------------------


def test_local_addr_spec_shape_bytes() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    b = tcp(B_TCP)
    data = rm(
        local_addr=pb.LocalAddr(
            socket_addr=addr_mangle.encode(A_ADDR), local_addr=b"\x01\x02", id=B_ID
        )
    )
    # PunchHoleResponse{socket_addr=0102 (copied), is_local=true (oneof)}
    assert core.on_frame(b, data, T0 + 2) == [Send(a, bytes.fromhex("5a060a0201023001")), Close(b)]


def test_local_addr_with_signature_and_relay() -> None:
    core = signed_core()
    a = waiting_a(core)
    b = tcp(B_TCP)
    local = addr_mangle.encode(("192.168.1.20", 21118))
    v6 = addr_mangle.encode(("2001:db8::9", 21116))
    data = rm(
        local_addr=pb.LocalAddr(
            socket_addr=addr_mangle.encode(A_ADDR),
            local_addr=local,
            relay_server="relay.example.com",
            id=B_ID,
            version="1.4.2",
            socket_addr_v6=v6,
        )
    )
    resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).punch_hole_response
    assert resp.socket_addr == local
    assert resp.WhichOneof("union") == "is_local"
    assert resp.is_local is True
    assert resp.relay_server == "relay.example.com"
    assert resp.socket_addr_v6 == v6
    verify_idpk(resp.pk, B_ID, PK_A)


def test_local_addr_without_requester_is_dropped() -> None:
    core = make_core()
    b = tcp(B_TCP)
    data = rm(local_addr=pb.LocalAddr(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID))
    assert core.on_frame(b, data, T0) == [Close(b)]


# -- RelayResponse (§6.10) -----------------------------------------------------------------


def relay_response(a_addr=A_ADDR, **fields) -> bytes:
    return rm(relay_response=pb.RelayResponse(socket_addr=addr_mangle.encode(a_addr), **fields))


def test_relay_response_id_is_replaced_by_empty_pk_without_version() -> None:
    core = signed_core()
    a = waiting_a(core)
    b = tcp(B_TCP)
    # §14.3: RelayResponse{pk=empty (oneof set)} = 9a 01 02 2a 00; socket_addr is cleared.
    actions = core.on_frame(b, relay_response(id=B_ID), T0 + 2)
    assert actions == [Send(a, bytes.fromhex("9a01022a00")), Close(b)]


def test_relay_response_id_is_replaced_by_signed_pk() -> None:
    core = signed_core()
    a = waiting_a(core)
    b = tcp(B_TCP)
    data = relay_response(uuid="u1", relay_server="relay.example.com", id=B_ID, version="1.4.2")
    resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).relay_response
    assert resp.WhichOneof("union") == "pk"
    assert resp.pk == SIGNED_IDPK_VECTOR
    assert resp.socket_addr == b""
    assert (resp.uuid, resp.relay_server, resp.version) == ("u1", "relay.example.com", "1.4.2")


def test_relay_response_to_request_relay_is_forwarded_without_pk() -> None:
    # B answering A's RequestRelay sets only socket_addr, version (and socket_addr_v6).
    core = signed_core()
    a = waiting_a(core)
    b = tcp(B_TCP)
    v6 = addr_mangle.encode(("2001:db8::9", 21116))
    data = relay_response(version="1.4.2", socket_addr_v6=v6, refuse_reason="")
    resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).relay_response
    assert resp.WhichOneof("union") is None
    assert resp.socket_addr == b""
    assert (resp.version, resp.socket_addr_v6) == ("1.4.2", v6)


def test_relay_response_refusal_is_forwarded() -> None:
    core = make_core()
    bring_online(core, T0)
    a = waiting_a(core)
    b = tcp(B_TCP)
    data = relay_response(refuse_reason="no thanks", id=B_ID)
    resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).relay_response
    assert resp.refuse_reason == "no thanks"


def test_relay_response_relay_server_lan_rewrites() -> None:
    local_ip = "192.168.1.1"
    core = make_core(mask="192.168.0.0/16", local_ip=local_ip, relay_servers=["public.example"])
    bring_online(core, T0)
    cases = [
        (("192.168.3.3", 1000), "relay.example.com", local_ip),  # A in the LAN
        (A_ADDR, local_ip, "public.example"),  # A outside, B proposed the LAN relay
        (A_ADDR, "relay.example.com", "relay.example.com"),  # untouched
        (("192.168.3.3", 1000), "", ""),  # empty stays empty
    ]
    for a_addr, proposed, expected in cases:
        a = waiting_a(core, tcp(a_addr))
        b = tcp(B_TCP)
        data = relay_response(a_addr, uuid="u", relay_server=proposed, id=B_ID)
        resp = one_answer(core.on_frame(b, data, T0 + 2), a, b).relay_response
        assert resp.relay_server == expected, (a_addr, proposed)


def test_relay_response_without_requester_is_dropped() -> None:
    core = make_core()
    b = tcp(B_TCP)
    assert core.on_frame(b, relay_response(id=B_ID), T0) == [Close(b)]


# -- RequestRelay (§6.9) -----------------------------------------------------------------


def request_relay(**fields) -> bytes:
    return rm(request_relay=pb.RequestRelay(**fields))


def test_request_relay_is_forwarded_whole_with_a_address() -> None:
    core = make_core(enforced_key="K")
    bring_online(core, T0)
    a = tcp()
    original = pb.RequestRelay(
        id=B_ID,
        uuid="2b0fd1f6-uuid",
        relay_server="relay.example.com:21117",
        secure=True,
        licence_key="wrong key: hbbs does not check it here",
        conn_type=pb.FILE_TRANSFER,
        token="tok",
        switch_code="sw",
    )
    original.control_permissions.permissions = 0b10
    actions = core.on_frame(a, rm(request_relay=original), T0 + 100)  # no online check either
    assert not any(isinstance(x, Close) for x in actions)  # A's link stays open
    ((payload, addr),) = udp_replies(actions)
    assert addr == B_ADDR
    fwd = decode(payload).request_relay
    assert addr_mangle.decode(fwd.socket_addr) == A_ADDR
    expected = pb.RequestRelay()
    expected.CopyFrom(original)
    expected.socket_addr = fwd.socket_addr
    assert fwd == expected
    assert core.state.requesters.take(A_ADDR) is a


def test_request_relay_then_relay_response_reaches_a() -> None:
    core = make_core()
    bring_online(core, T0)
    a = tcp()
    ((payload, _),) = udp_replies(core.on_frame(a, request_relay(id=B_ID, uuid="u1"), T0 + 1))
    socket_addr = decode(payload).request_relay.socket_addr
    b = tcp(B_TCP)
    data = rm(relay_response=pb.RelayResponse(socket_addr=socket_addr, version="1.4.2"))
    one_answer(core.on_frame(b, data, T0 + 2), a, b)


def test_request_relay_memory_only_lookup() -> None:
    core = make_core()
    a = tcp()
    assert core.on_frame(a, request_relay(id=B_ID, uuid="u1"), T0) == []
    assert core.state.pending_loads == 0
    assert core.state.requesters.take(A_ADDR) is a


def test_request_relay_to_db_loaded_peer_without_address_does_nothing() -> None:
    core = make_core()
    link = tcp()
    core.on_frame(link, punch_request(), T0)
    core.peer_loaded(B_ID, stored(), T0)  # in memory now, never registered by UDP
    assert core.on_frame(tcp(), request_relay(id=B_ID, uuid="u1"), T0 + 1) == []


def test_request_relay_over_websocket() -> None:
    core = make_core()
    bring_online(core, T0)
    a = ws(("198.51.100.9", 7000))
    ((payload, addr),) = udp_replies(core.on_frame(a, request_relay(id=B_ID, uuid="u"), T0 + 1))
    assert addr == B_ADDR
    assert addr_mangle.decode(decode(payload).request_relay.socket_addr) == a.addr


def test_request_relay_spec_vector_is_forwarded() -> None:
    core = make_core()
    bring_online(core, T0)
    # §14.3 RequestRelay{uuid="u1", licence_key="K"} with id added in front (field 1).
    data = bytes.fromhex("9201") + bytes([11 + 7]) + b"\x0a\x09" + B_ID.encode()
    data += bytes.fromhex("1202753132014b")
    ((payload, _),) = udp_replies(core.on_frame(tcp(), data, T0 + 1))
    fwd = decode(payload).request_relay
    assert (fwd.id, fwd.uuid, fwd.licence_key) == (B_ID, "u1", "K")
