"""Issue 12: no unauthenticated UDP answer larger than its request beyond a small constant,
whatever the options; forwarded fields capped to what clients send."""

from __future__ import annotations

import pytest

from pyhbb.rendezvous.actions import Action, Send, SendUdp
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.messages import FIELD_CAPS, MAX_CONFIG_UPDATE_BYTES, config_update_problem
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    A_ADDR,
    B_ADDR,
    B_ID,
    NO_REQUEST_PK,
    T0,
    bring_online,
    decode,
    make_core,
    register_peer,
    register_pk,
    resolve,
    rm,
    tcp,
)

SLACK = 16  # bytes an answer may exceed its request by
# The legacy options at their worst: a serial above every client's, the longest -R list
# that fits one datagram, a software URL, UDP punching.
SERVERS = [f"rendezvous-{i}.{'x' * 200}.example" for i in range(5)]
LEGACY = {
    "serial": 1 << 30,
    "rendezvous_servers": SERVERS,
    "software_url": "https://example.com/" + "d" * 500 + "/rustdesk-9.9.9.exe",
    "udp_punch": True,
}
FORGED = ("198.51.100.99", 4444)


def udp_bytes(actions: list[Action]) -> int:
    return sum(len(a.payload) for a in actions if isinstance(a, SendUdp))


def legacy_core() -> RendezvousCore:
    assert config_update_problem(SERVERS) is None  # the worst the start-up check allows
    core = make_core(**LEGACY)
    bring_online(core, T0)
    return core


REQUESTS = {
    "register_peer unknown id": rm(register_peer=pb.RegisterPeer(id="nobody1", serial=0)),
    "register_peer known id": rm(register_peer=pb.RegisterPeer(id=B_ID, serial=0)),
    "register_pk": register_pk("newpeer1"),
    "register_pk known id": register_pk(B_ID, uuid=b"another-machine"),
    "software_update": rm(software_update=pb.SoftwareUpdate(url="0.1")),
    "configure_update": rm(configure_update=pb.ConfigUpdate(serial=1 << 31 - 1)),
    "punch_hole_sent": rm(
        punch_hole_sent=pb.PunchHoleSent(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID)
    ),
    "test_nat_request": rm(test_nat_request=pb.TestNatRequest(serial=0)),
    "online_request": rm(online_request=pb.OnlineRequest(peers=[B_ID] * 100)),
    "punch_hole_request": rm(punch_hole_request=pb.PunchHoleRequest(id=B_ID)),
    "request_relay": rm(request_relay=pb.RequestRelay(id=B_ID, uuid="u")),
    "garbage": b"\xff" * 20,
}


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_no_udp_answer_to_a_stranger_is_larger_than_its_request(kind: str) -> None:
    core = legacy_core()
    request = REQUESTS[kind]
    now = T0 + 1
    for _ in range(20):  # repeated, as a flood would
        out = resolve(core, core.on_udp(request, FORGED, now), now)
        assert udp_bytes(out) <= len(request) + SLACK, (kind, out)
        assert all(a.addr == FORGED for a in out if isinstance(a, SendUdp)), out
        now += 31  # past every pacing interval


def test_a_forged_heartbeat_from_the_peers_own_address_gets_one_config_update_per_30s() -> None:
    # The forger can spoof B's registered address; B then receives at most one large
    # answer per 30 s, however many heartbeats are forged.
    core = legacy_core()
    heartbeat = register_peer(serial=3)
    got = []
    now = T0 + 1
    for _ in range(600):  # 10 per second for a minute
        out = core.on_udp(heartbeat, B_ADDR, now)
        assert out[0] == SendUdp(NO_REQUEST_PK, B_ADDR)
        got += [a for a in out[1:] if isinstance(a, SendUdp)]
        now += 0.1
    assert len(got) == 2  # at T0 + 1 and T0 + 31 (a config update each)
    assert all(decode(a.payload).HasField("configure_update") for a in got)
    assert all(len(a.payload) <= MAX_CONFIG_UPDATE_BYTES for a in got)


def test_software_update_is_answered_only_with_a_registered_peers_heartbeat() -> None:
    core = legacy_core()
    ask = REQUESTS["software_update"]
    assert core.on_udp(ask, FORGED, T0 + 1) == []
    assert core.on_udp(register_peer(serial=1 << 30), FORGED, T0 + 2) == [
        SendUdp(bytes.fromhex("3a021001"), FORGED)  # not registered: request_pk only
    ]
    assert core.on_udp(ask, B_ADDR, T0 + 3) == []
    out = core.on_udp(register_peer(serial=1 << 30), B_ADDR, T0 + 4)
    assert [decode(a.payload).WhichOneof("union") for a in out] == [  # type: ignore[union-attr]
        "register_peer_response",
        "software_update",
    ]


def test_oversized_rendezvous_server_lists_are_refused() -> None:
    assert config_update_problem(["x" * 300]) is not None
    assert config_update_problem([f"{i}." + "y" * 250 for i in range(6)]) is not None
    assert config_update_problem(["a.example.com", "b.example.com:21116"]) is None


def test_loopback_configure_update_with_an_oversized_list_is_ignored() -> None:
    core = make_core(serial=3)
    big = rm(configure_update=pb.ConfigUpdate(serial=9, rendezvous_servers=["z" * 400]))
    assert core.on_udp(big, ("127.0.0.1", 1), T0) == []


# -- forwarded fields ------------------------------------------------------------------------


def forwarded_to_b(core: RendezvousCore, frame: bytes, now: float) -> list[Action]:
    link = tcp()
    return [
        a
        for a in resolve(core, core.on_frame(link, frame, now), now)
        if a.__class__
        in (
            SendUdp,
            Send,
        )
    ]


@pytest.mark.parametrize(
    "frame",
    [
        rm(punch_hole_request=pb.PunchHoleRequest(id=B_ID, socket_addr_v6=b"\x01" * 60_000)),
        rm(punch_hole_request=pb.PunchHoleRequest(id=B_ID, token="t" * 60_000)),
        rm(request_relay=pb.RequestRelay(id=B_ID, uuid="u", token="t" * 60_000)),
        rm(request_relay=pb.RequestRelay(id=B_ID, uuid="u" * 65)),
        rm(request_relay=pb.RequestRelay(id=B_ID, relay_server="r" * 262)),
        rm(
            request_relay=pb.RequestRelay(
                id=B_ID, controlled_context=pb.ControlledContext(conn_audit_ref="c" * 300)
            )
        ),
    ],
)
def test_oversized_fields_are_not_forwarded(frame: bytes) -> None:
    core = make_core()
    bring_online(core, T0)
    assert forwarded_to_b(core, frame, T0 + 1) == []
    assert core.state.stats["oversized_fields"] == 1


def test_fields_at_their_caps_are_forwarded_in_one_small_datagram() -> None:
    core = make_core()
    bring_online(core, T0)
    relay = pb.RequestRelay(
        id=B_ID,
        uuid="u" * FIELD_CAPS["uuid"],
        relay_server="r" * FIELD_CAPS["relay_server"],
        licence_key="k" * FIELD_CAPS["licence_key"],
        token="t" * FIELD_CAPS["token"],
        switch_code="s" * 256,
    )
    ((action,),) = [forwarded_to_b(core, rm(request_relay=relay), T0 + 1)]
    assert isinstance(action, SendUdp) and action.addr == B_ADDR
    assert len(action.payload) < 2048
    punch = pb.PunchHoleRequest(id=B_ID, socket_addr_v6=addr_mangle.encode(("2001:db8::1", 5)))
    ((action,),) = [forwarded_to_b(core, rm(punch_hole_request=punch), T0 + 2)]
    assert decode(action.payload).punch_hole.socket_addr_v6 == punch.socket_addr_v6


def test_unknown_fields_are_not_forwarded() -> None:
    core = make_core()
    bring_online(core, T0)
    relay = rm(request_relay=pb.RequestRelay(id=B_ID, uuid="u"))
    # field 15 of RendezvousMessage's request_relay, as bytes the schema does not define
    inner = pb.RequestRelay(id=B_ID, uuid="u").SerializeToString() + b"\xfa\x07\x03abc"
    frame = bytes([0x92, 0x01, len(inner)]) + inner
    assert decode(frame).request_relay.uuid == "u"
    ((action,),) = [forwarded_to_b(core, frame, T0 + 1)]
    assert b"abc" not in action.payload
    assert len(action.payload) <= len(relay) + 16
