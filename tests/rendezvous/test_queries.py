"""TestNatRequest and OnlineRequest on P, P+2 and P-1 (docs/protocol.md §6.11, §6.12)."""

from __future__ import annotations

import pytest

from pyhbb.rendezvous.actions import Close, Send
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    B_ADDR,
    T0,
    bring_online,
    decode,
    make_core,
    nat,
    punch_request,
    register_pk,
    resolve,
    rm,
    stored,
    tcp,
    ws,
)

TEST_NAT_EMPTY = bytes.fromhex("a20100")  # §14.3 TestNatRequest{}
SRC = ("198.51.100.20", 54321)
NAT_RESPONSE_54321 = bytes.fromhex("aa010408b1a803")  # §14.3 TestNatResponse{port=54321}


def nat_request(serial: int) -> bytes:
    return rm(test_nat_request=pb.TestNatRequest(serial=serial))


@pytest.mark.parametrize("make_link", [tcp, ws, nat])
def test_nat_test_echoes_the_source_port_and_closes(make_link) -> None:
    core = make_core()
    link = make_link(SRC)
    handler = core.on_nat_frame if make_link is nat else core.on_frame
    assert handler(link, TEST_NAT_EMPTY, T0) == [Send(link, NAT_RESPONSE_54321), Close(link)]


@pytest.mark.parametrize("make_link", [tcp, ws])
def test_nat_test_on_p_carries_config_update_when_server_serial_is_higher(make_link) -> None:
    core = make_core(serial=5, rendezvous_servers=["rs.example.com"])
    link = make_link(SRC)
    for serial in (0, 3, 4):
        (send, close) = core.on_frame(link, nat_request(serial), T0)
        assert close == Close(link)
        resp = decode(send.payload).test_nat_response  # type: ignore[union-attr]
        assert resp.port == 54321
        assert resp.HasField("cu")
        assert (resp.cu.serial, list(resp.cu.rendezvous_servers)) == (5, ["rs.example.com"])
    for serial in (5, 9):
        assert core.on_frame(link, nat_request(serial), T0) == [
            Send(link, NAT_RESPONSE_54321),
            Close(link),
        ]


def test_nat_test_on_p_minus_1_never_carries_config_update() -> None:
    core = make_core(serial=100, rendezvous_servers=["rs.example.com"])
    link = nat(SRC)
    assert core.on_nat_frame(link, nat_request(0), T0) == [
        Send(link, NAT_RESPONSE_54321),
        Close(link),
    ]


def test_nat_test_reports_port_zero_for_port_zero() -> None:
    core = make_core()
    link = ws(("198.51.100.20", 0))
    (send, _) = core.on_frame(link, TEST_NAT_EMPTY, T0)
    assert send == Send(link, bytes.fromhex("aa0100"))


# -- OnlineRequest --------------------------------------------------------------------------


def online_request(peers: list[str]) -> bytes:
    return rm(online_request=pb.OnlineRequest(id="111111111", peers=peers))


def core_with_online(ids: list[str], now: float):
    core = make_core()
    for i, peer_id in enumerate(ids):
        bring_online(core, now, peer_id=peer_id, addr=(f"192.0.2.{i + 1}", 1000))
    return core


IDS = [f"10000000{i}" for i in range(10)]


@pytest.mark.parametrize("make_link", [nat, tcp, ws])
def test_online_bitmap_spec_vector(make_link) -> None:
    # §14.3: 10 requested IDs with indexes 0, 2, 8, 9 online -> states = a0 c0
    core = core_with_online([IDS[0], IDS[2], IDS[8], IDS[9]], T0)
    link = make_link(SRC)
    handler = core.on_nat_frame if make_link is nat else core.on_frame
    actions = handler(link, online_request(IDS), T0 + 1)
    assert actions == [Send(link, bytes.fromhex("c201040a02a0c0")), Close(link)]


def test_online_response_spec_vector_one_byte() -> None:
    core = core_with_online(["123456789", "987654321"], T0)
    link = nat(SRC)
    actions = core.on_nat_frame(link, online_request(["123456789", "x", "987654321"]), T0)
    assert actions == [Send(link, bytes.fromhex("c201030a01a0")), Close(link)]


def test_online_request_spec_vector_input() -> None:
    core = core_with_online(["987654321"], T0)
    # §14.3: OnlineRequest{id="111111111", peers=["123456789", "987654321"]}
    data = bytes.fromhex("ba01210a0931313131313131313112093132333435363738391209393837363534333231")
    link = nat(SRC)
    (send, _) = core.on_nat_frame(link, data, T0)
    assert decode(send.payload).online_response.states == b"\x40"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("n", "length"), [(0, 0), (1, 1), (7, 1), (8, 1), (9, 2), (16, 2), (17, 3)]
)
def test_online_bitmap_has_exactly_ceil_n_over_8_bytes(n: int, length: int) -> None:
    core = core_with_online([], T0)
    (send, _) = core.on_nat_frame(nat(SRC), online_request([f"id{i}" for i in range(n)]), T0)
    assert decode(send.payload).online_response.states == bytes(length)  # type: ignore[union-attr]


def test_online_bitmap_is_msb_first_for_every_position() -> None:
    ids = [f"peer{i:04d}" for i in range(20)]
    core = core_with_online(ids, T0)
    for i in range(20):
        request = [f"offline{j}" for j in range(20)]
        request[i] = ids[i]
        (send, _) = core.on_nat_frame(nat(SRC), online_request(request), T0 + 1)
        states = decode(send.payload).online_response.states  # type: ignore[union-attr]
        expected = bytearray(3)
        expected[i // 8] = 1 << (7 - i % 8)
        assert states == bytes(expected), i


def test_online_means_in_memory_and_registered_within_30_seconds() -> None:
    core = core_with_online(["online01"], T0)
    # A database-only peer that was loaded into memory (offline), and an unknown one.
    resolve(core, core.on_frame(tcp(), punch_request("dbpeer01"), T0), T0, {"dbpeer01": stored()})
    request = online_request(["online01", "dbpeer01", "unknown1"])
    (send, _) = core.on_nat_frame(nat(SRC), request, T0 + 29.9)
    assert decode(send.payload).online_response.states == b"\x80"  # type: ignore[union-attr]
    (send, _) = core.on_nat_frame(nat(SRC), request, T0 + 30)
    assert decode(send.payload).online_response.states == b"\x00"  # type: ignore[union-attr]
    assert core.state.pending_loads == 0  # memory only: no database look-ups


def test_online_request_never_loads_from_database() -> None:
    core = make_core()
    link = nat(SRC)
    actions = core.on_nat_frame(link, online_request(["123456789"]), T0)
    assert actions == [Send(link, bytes.fromhex("c201030a0100")), Close(link)]
    assert core.state.pending_loads == 0


def test_duplicate_ids_each_get_their_bit() -> None:
    core = core_with_online(["123456789"], T0)
    (send, _) = core.on_nat_frame(nat(SRC), online_request(["123456789"] * 9), T0)
    assert decode(send.payload).online_response.states == b"\xff\x80"  # type: ignore[union-attr]


# -- everything else on P-1 ------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xff\xff\xff",
        rm(register_peer=pb.RegisterPeer(id="123456789")),
        register_pk(),
        punch_request(),
        rm(request_relay=pb.RequestRelay(id="123456789", uuid="u")),
        rm(punch_hole_sent=pb.PunchHoleSent(id="123456789")),
        rm(key_exchange=pb.KeyExchange(keys=[b"x" * 32])),
        rm(hc=pb.HealthCheck(token="t")),
        rm(configure_update=pb.ConfigUpdate(serial=99)),
        bytes.fromhex("0801"),  # a field no RendezvousMessage has: parses, no variant
    ],
)
def test_everything_else_on_p_minus_1_closes_without_reply(payload: bytes) -> None:
    core = make_core()
    link = nat(SRC)
    assert core.on_nat_frame(link, payload, T0) == [Close(link)]
    assert len(core.state.requesters) == 0
    assert len(core.state.peers) == 0


def test_p_minus_1_registrations_have_no_effect() -> None:
    core = make_core()
    bring_online(core, T0)
    link = nat(B_ADDR)
    core.on_nat_frame(link, register_pk(pk=b"\x33" * 32), T0 + 10)
    assert core.state.peers.get("123456789").pk != b"\x33" * 32  # type: ignore[union-attr]
