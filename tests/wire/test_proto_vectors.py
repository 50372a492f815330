"""Our .proto files produce the exact bytes of docs/protocol.md §14.3."""

from __future__ import annotations

import pytest

from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb

PH_ADDR = addr_mangle.encode(("203.0.113.7", 50000), 0x10212000)


def _phr_nat() -> pb.PunchHoleResponse:
    r = pb.PunchHoleResponse(socket_addr=b"\x01\x02")
    r.nat_type = pb.UNKNOWN_NAT
    return r


def _rr_pk() -> pb.RelayResponse:
    r = pb.RelayResponse()
    r.pk = b""
    return r


CASES = [
    (
        pb.RendezvousMessage(register_peer=pb.RegisterPeer(id="123456789")),
        "320b0a09313233343536373839",
    ),
    (
        pb.RendezvousMessage(register_peer_response=pb.RegisterPeerResponse(request_pk=True)),
        "3a021001",
    ),
    (pb.RendezvousMessage(register_peer_response=pb.RegisterPeerResponse()), "3a00"),
    (
        pb.RendezvousMessage(
            register_pk=pb.RegisterPk(id="123456789", uuid=b"abc", pk=b"\x11" * 32)
        ),
        "7a320a0931323334353637383912036162631a20" + "11" * 32,
    ),
    (pb.RendezvousMessage(register_pk_response=pb.RegisterPkResponse()), "820100"),
    (
        pb.RendezvousMessage(
            register_pk_response=pb.RegisterPkResponse(result=pb.RegisterPkResponse.UUID_MISMATCH)
        ),
        "82010208 02".replace(" ", ""),
    ),
    (pb.RendezvousMessage(register_pk_response=pb.RegisterPkResponse(keep_alive=60)), "820102103c"),
    (
        pb.RendezvousMessage(
            punch_hole_request=pb.PunchHoleRequest(
                id="123456789", nat_type=pb.ASYMMETRIC, licence_key="K", version="1.4.2"
            )
        ),
        "42170a093132333435363738391001 1a014b 3205312e342e32".replace(" ", ""),
    ),
    (
        pb.RendezvousMessage(
            punch_hole=pb.PunchHole(
                socket_addr=PH_ADDR, relay_server="relay.example.com:21117", nat_type=pb.ASYMMETRIC
            )
        ),
        "4a270a0a50e3004042209641242f1217" + b"relay.example.com:21117".hex() + "1801",
    ),
    (pb.RendezvousMessage(punch_hole_response=pb.PunchHoleResponse()), "5a00"),
    (
        pb.RendezvousMessage(
            punch_hole_response=pb.PunchHoleResponse(failure=pb.PunchHoleResponse.OFFLINE)
        ),
        "5a021802",
    ),
    (
        pb.RendezvousMessage(
            punch_hole_response=pb.PunchHoleResponse(failure=pb.PunchHoleResponse.LICENSE_MISMATCH)
        ),
        "5a021803",
    ),
    (pb.RendezvousMessage(punch_hole_response=_phr_nat()), "5a060a0201022800"),
    (pb.RendezvousMessage(relay_response=_rr_pk()), "9a01022a00"),
    (
        pb.RendezvousMessage(request_relay=pb.RequestRelay(uuid="u1", licence_key="K")),
        "920107120275313201 4b".replace(" ", ""),
    ),
    (
        pb.RendezvousMessage(
            configure_update=pb.ConfigUpdate(serial=5, rendezvous_servers=["rs.example.com"])
        ),
        "721208051 20e".replace(" ", "") + b"rs.example.com".hex(),
    ),
    (pb.RendezvousMessage(test_nat_request=pb.TestNatRequest()), "a20100"),
    (pb.RendezvousMessage(test_nat_response=pb.TestNatResponse(port=54321)), "aa010408b1a803"),
    (
        pb.RendezvousMessage(
            online_request=pb.OnlineRequest(id="111111111", peers=["123456789", "987654321"])
        ),
        "ba01210a09"
        + b"111111111".hex()
        + "1209"
        + b"123456789".hex()
        + "1209"
        + b"987654321".hex(),
    ),
    (pb.RendezvousMessage(online_response=pb.OnlineResponse(states=b"\xa0")), "c201030a01a0"),
]


@pytest.mark.parametrize(("msg", "hexed"), CASES)
def test_encoding(msg: pb.RendezvousMessage, hexed: str) -> None:
    assert msg.SerializeToString().hex() == hexed
    back = pb.RendezvousMessage()
    back.ParseFromString(bytes.fromhex(hexed))
    assert back == msg


def test_empty_bytes_parse_as_no_variant() -> None:
    msg = pb.RendezvousMessage()
    msg.ParseFromString(b"")
    assert msg.WhichOneof("union") is None


def test_unknown_fields_and_enum_values_are_tolerated() -> None:
    # field 99 (varint) and PunchHoleRequest.nat_type = 7 (unknown enum value)
    data = bytes.fromhex("42050a01411007") + bytes.fromhex("98060a")
    msg = pb.RendezvousMessage()
    msg.ParseFromString(data)
    assert msg.punch_hole_request.id == "A"
    assert msg.punch_hole_request.nat_type == 7


def test_every_envelope_field_number() -> None:
    fields = {f.name: f.number for f in pb.RendezvousMessage.DESCRIPTOR.fields}
    assert fields == {
        "register_peer": 6,
        "register_peer_response": 7,
        "punch_hole_request": 8,
        "punch_hole": 9,
        "punch_hole_sent": 10,
        "punch_hole_response": 11,
        "fetch_local_addr": 12,
        "local_addr": 13,
        "configure_update": 14,
        "register_pk": 15,
        "register_pk_response": 16,
        "software_update": 17,
        "request_relay": 18,
        "relay_response": 19,
        "test_nat_request": 20,
        "test_nat_response": 21,
        "peer_discovery": 22,
        "online_request": 23,
        "online_response": 24,
        "key_exchange": 25,
        "hc": 26,
        "http_proxy_request": 27,
        "http_proxy_response": 28,
    }
