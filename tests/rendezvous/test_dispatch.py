"""Dispatch by transport: TCP/WebSocket (§6.5, §6.13, §6.15, §7.4), UDP (§6.2, §6.14)."""

from __future__ import annotations

import pytest

from pyhbb.rendezvous.actions import (
    Close,
    InsertPeer,
    LoadPeer,
    Persist,
    ProxyHttp,
    ResolveServers,
    Send,
    SendUdp,
    StartSession,
)
from pyhbb.rendezvous.adapters.udp_out import UdpOut
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from tests.rendezvous.helpers import (
    A_ADDR,
    B_ADDR,
    B_ID,
    NO_REQUEST_PK,
    PK_A,
    PUNCH_OFFLINE,
    REG_NOT_SUPPORT,
    REG_OK,
    REQUEST_PK,
    T0,
    bring_online,
    decode,
    make_core,
    punch_request,
    register_peer,
    register_pk,
    resolve,
    rm,
    sends,
    tcp,
    udp_replies,
    ws,
)

LOOPBACK = ("127.0.0.1", 40000)

# -- TCP / WebSocket -----------------------------------------------------------------------


@pytest.mark.parametrize("make_link", [tcp, ws])
@pytest.mark.parametrize(
    "payload",
    [
        b"",  # empty frame / empty binary message
        b"\xff\xff\xff\xff\xff",  # not protobuf
        b"\x0a",  # truncated
        bytes.fromhex("0801"),  # parses, but no variant
        rm(key_exchange=pb.KeyExchange(keys=[b"k"])),
        rm(hc=pb.HealthCheck(token="t")),
        rm(peer_discovery=pb.PeerDiscovery(cmd="ping")),
        rm(punch_hole=pb.PunchHole(socket_addr=b"\x01")),
        rm(fetch_local_addr=pb.FetchLocalAddr(socket_addr=b"\x01")),
        rm(configure_update=pb.ConfigUpdate(serial=99)),
        rm(software_update=pb.SoftwareUpdate(url="x")),
        rm(register_peer_response=pb.RegisterPeerResponse(request_pk=True)),
        rm(punch_hole_response=pb.PunchHoleResponse()),
        rm(test_nat_response=pb.TestNatResponse(port=1)),
    ],
)
def test_unhandled_frames_close_without_reply(make_link, payload: bytes) -> None:
    core = make_core()
    link = make_link()
    assert core.on_frame(link, payload, T0) == [Close(link)]
    assert len(core.state.requesters) == 0


@pytest.mark.parametrize("make_link", [tcp, ws])
def test_register_pk_without_key_or_id_change_is_not_supported(make_link) -> None:
    core = make_core()
    link = make_link()
    for data in (register_pk(pk=b""), register_pk(uuid=b"")):
        assert core.on_frame(link, data, T0) == [Send(link, REG_NOT_SUPPORT), Close(link)]


def test_id_change_disabled_is_not_supported() -> None:
    core = make_core(id_change=False)
    link = tcp()
    data = rm(register_pk=pb.RegisterPk(id="newid01", uuid=b"u", old_id=B_ID))
    assert core.on_frame(link, data, T0) == [Send(link, REG_NOT_SUPPORT), Close(link)]


def test_http_proxy_request_needs_an_encrypted_link() -> None:
    core = make_core()
    link = tcp()
    data = rm(http_proxy_request=pb.HttpProxyRequest(method="GET", path="/api/x"))
    (send, close) = core.on_frame(link, data, T0)
    assert close == Close(link)
    assert isinstance(send, Send) and send.link is link
    assert decode(send.payload).http_proxy_response.error

    class SecureLink(type(link)):  # type: ignore[misc]
        @property
        def secure(self) -> bool:
            return True

    secure = SecureLink(A_ADDR, link.transport)
    assert core.on_frame(secure, data, T0) == [ProxyHttp(secure, data)]


# -- TCP/WebSocket registration sessions (§7.4) ----------------------------------------------


def session_register(core, link, now: float = T0):
    actions = core.on_frame(link, register_pk(), now)
    return resolve(core, actions, now)


@pytest.mark.parametrize("make_link", [tcp, ws])
def test_register_pk_on_a_stream_becomes_a_session(make_link) -> None:
    core = make_core()
    link = make_link(B_ADDR)
    actions = core.on_frame(link, register_pk(), T0)
    assert not any(isinstance(a, Close) for a in actions)
    load, start = actions
    assert load == LoadPeer(B_ID)
    # The session starts at once; heartbeats well below keep_alive (60 s), and the link is
    # dropped after some heartbeats go unanswered (§7.4).
    assert isinstance(start, StartSession) and start.link is link
    assert 0 < start.heartbeat <= 30
    assert 2 * start.heartbeat <= start.timeout < 90
    (persist,) = core.peer_loaded(B_ID, None, T0)
    assert isinstance(persist, Persist)
    assert isinstance(persist.write, InsertPeer)
    assert persist.write.ip == B_ADDR[0]
    # §14.3: RegisterPkResponse{OK, keep_alive=60} = 82 01 02 10 3c
    assert persist.on_ok == [Send(link, bytes.fromhex("820102103c"))]
    on_fail = decode(persist.on_fail[0].payload).register_pk_response  # type: ignore[union-attr]
    assert (on_fail.result, on_fail.keep_alive) == (pb.RegisterPkResponse.SERVER_ERROR, 60)


def test_session_keep_alive_is_configurable_and_in_every_answer() -> None:
    core = make_core(keep_alive=45)
    link = tcp(B_ADDR)
    actions = session_register(core, link)
    (reply,) = [a for a in actions if isinstance(a, Send)]
    resp = decode(reply.payload).register_pk_response
    assert (resp.result, resp.keep_alive) == (pb.RegisterPkResponse.OK, 45)
    short = core.on_frame(link, register_pk("12345"), T0 + 1)
    resp = decode(sends(short)[0][1]).register_pk_response
    assert (resp.result, resp.keep_alive) == (pb.RegisterPkResponse.UUID_MISMATCH, 45)


def test_session_peer_stays_online_while_the_session_lives() -> None:
    core = make_core()
    link = tcp(B_ADDR)
    session_register(core, link)
    record = core.state.peers.get(B_ID)
    assert record is not None
    assert record.online(T0 + 1000)
    # Heartbeat echoes (empty frames) are fine on a session, no close.
    assert core.on_frame(link, b"", T0 + 20) == []
    core.on_link_closed(link, T0 + 1000)
    assert not record.online(T0 + 1000)
    a = tcp()
    assert core.on_frame(a, punch_request(), T0 + 1000) == [Send(a, PUNCH_OFFLINE)]


def test_punch_hole_goes_over_the_session() -> None:
    core = make_core()
    b = ws(B_ADDR)
    session_register(core, b)
    a = tcp()
    actions = core.on_frame(a, punch_request(nat_type=pb.ASYMMETRIC), T0 + 100)
    ((target, payload),) = sends(actions)
    assert target is b
    hole = decode(payload).punch_hole
    assert addr_mangle.decode(hole.socket_addr) == A_ADDR


def test_request_relay_goes_over_the_session() -> None:
    core = make_core()
    b = tcp(B_ADDR)
    session_register(core, b)
    a = tcp()
    actions = core.on_frame(a, rm(request_relay=pb.RequestRelay(id=B_ID, uuid="u")), T0 + 50)
    ((target, payload),) = sends(actions)
    assert target is b
    assert decode(payload).request_relay.uuid == "u"


def test_session_frames_do_not_close_the_session() -> None:
    core = make_core()
    link = tcp(B_ADDR)
    session_register(core, link)
    nat = rm(test_nat_request=pb.TestNatRequest())
    actions = core.on_frame(link, nat, T0 + 1)
    assert len(actions) == 1 and isinstance(actions[0], Send)


def test_register_peer_on_a_stream_answers_on_it() -> None:
    # pyhbb extension (upstream closes): a known peer with the same IP is bound to the link.
    core = make_core(serial=5)
    bring_online(core, T0)
    link = tcp(B_ADDR)
    actions = core.on_frame(link, register_peer(serial=3), T0 + 1)
    assert actions[0] == Send(link, NO_REQUEST_PK)
    assert isinstance(actions[1], StartSession)
    assert decode(actions[2].payload).configure_update.serial == 5  # type: ignore[union-attr]
    unknown = tcp(("192.0.2.50", 1))
    actions = core.on_frame(unknown, register_peer("unknown01"), T0 + 1)
    assert actions[0] == Send(unknown, REQUEST_PK)


# -- UDP -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff",
        b"",
        punch_request(),
        rm(punch_hole_sent=pb.PunchHoleSent(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID)),
        rm(local_addr=pb.LocalAddr(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID)),
        rm(relay_response=pb.RelayResponse(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID)),
        rm(request_relay=pb.RequestRelay(id=B_ID, uuid="u")),
        rm(test_nat_request=pb.TestNatRequest()),
        rm(online_request=pb.OnlineRequest(peers=[B_ID])),
        rm(key_exchange=pb.KeyExchange(keys=[b"k"])),
        rm(hc=pb.HealthCheck(token="t")),
        rm(http_proxy_request=pb.HttpProxyRequest(method="GET")),
        rm(punch_hole=pb.PunchHole(socket_addr=b"\x01")),
    ],
)
def test_udp_ignores_everything_else(payload: bytes) -> None:
    # No reflection: nothing is sent anywhere, no requester is registered (§6.2, §13).
    core = make_core()
    bring_online(core, T0)
    a = tcp()
    udp_replies(core.on_frame(a, punch_request(), T0 + 1))  # A waits for an answer
    assert core.on_udp(payload, B_ADDR, T0 + 2) == []
    assert core.state.requesters.take(A_ADDR) is a


def test_udp_punch_hole_sent_only_answers_a_pending_request_from_b() -> None:
    # §7.9 with --udp-punch: accepted only from B's registered IP for a pending request.
    core = make_core(udp_punch=True)
    bring_online(core, T0)
    a = tcp()
    sent = rm(punch_hole_sent=pb.PunchHoleSent(socket_addr=addr_mangle.encode(A_ADDR), id=B_ID))
    assert core.on_udp(sent, ("192.0.2.66", 1), T0 + 1) == []  # nothing pending
    udp_replies(core.on_frame(a, punch_request(udp_port=5555), T0 + 1))
    assert core.on_udp(sent, ("192.0.2.66", 1), T0 + 2) == []  # a stranger
    b_udp = (B_ADDR[0], 33333)
    ((target, payload),) = sends(core.on_udp(sent, b_udp, T0 + 2))
    assert target is a
    resp = decode(payload).punch_hole_response
    assert resp.is_udp is True
    assert addr_mangle.decode(resp.socket_addr) == b_udp


def test_configure_update_from_loopback_with_higher_serial() -> None:
    core = make_core(serial=3, rendezvous_servers=["old.example"])
    cu = rm(configure_update=pb.ConfigUpdate(serial=4, rendezvous_servers=["a", "", "b"]))
    for src in (LOOPBACK, ("127.1.2.3", 1), ("::1", 5)):
        assert core.on_udp(cu, src, T0) == [ResolveServers(4, ["a", "b"])]
    # No change until the adapter has resolved the names.
    assert core.state.serial == 3
    core.adopt_config(4, ["a"])
    assert (core.state.serial, core.state.rendezvous_servers) == (4, ["a"])
    bring_online(core, T0 + 1)  # pushed to registered peers only (issue 12)
    actions = core.on_udp(register_peer(serial=3), B_ADDR, T0 + 1)
    assert actions[0] == SendUdp(NO_REQUEST_PK, B_ADDR)
    pushed = decode(actions[1].payload).configure_update  # type: ignore[union-attr]
    assert (pushed.serial, list(pushed.rendezvous_servers)) == (4, ["a"])


def test_configure_update_refused_from_elsewhere_or_with_lower_serial() -> None:
    core = make_core(serial=3)
    cu = rm(configure_update=pb.ConfigUpdate(serial=9, rendezvous_servers=["a"]))
    for src in (B_ADDR, ("10.0.0.1", 1), ("2001:db8::1", 1), ("0.0.0.0", 1)):
        assert core.on_udp(cu, src, T0) == []
    for serial in (0, 2, 3):
        stale = rm(configure_update=pb.ConfigUpdate(serial=serial, rendezvous_servers=["a"]))
        assert core.on_udp(stale, LOOPBACK, T0) == []


def test_adopt_config_ignores_an_older_serial() -> None:
    core = make_core(serial=3)
    core.adopt_config(7, ["x"])
    core.adopt_config(5, ["y"])  # a slower resolution finishing late
    assert (core.state.serial, core.state.rendezvous_servers) == (7, ["x"])


def test_software_update() -> None:
    # Answered with the asker's next accepted heartbeat, never straight back to a source
    # that may be forged (issue 12: the answer is many times larger than the request).
    url = "https://example.com/download/rustdesk-1.1.9.exe"
    core = make_core(software_url=url)
    bring_online(core, T0)
    old = rm(software_update=pb.SoftwareUpdate(url="1.1.8"))
    expected = rm(software_update=pb.SoftwareUpdate(url=url))
    assert core.on_udp(old, B_ADDR, T0) == []
    assert core.on_udp(register_peer(), B_ADDR, T0 + 1) == [
        SendUdp(NO_REQUEST_PK, B_ADDR),
        SendUdp(expected, B_ADDR),
    ]
    assert core.on_udp(register_peer(), B_ADDR, T0 + 40) == [SendUdp(NO_REQUEST_PK, B_ADDR)]
    same = rm(software_update=pb.SoftwareUpdate(url="1.1.9"))
    assert core.on_udp(same, B_ADDR, T0 + 41) == []
    assert core.on_udp(register_peer(), B_ADDR, T0 + 80) == [SendUdp(NO_REQUEST_PK, B_ADDR)]


def test_software_update_without_configured_url_is_ignored() -> None:
    core = make_core()
    assert core.on_udp(rm(software_update=pb.SoftwareUpdate(url="1.0")), B_ADDR, T0) == []


def test_udp_register_pk_reply_goes_to_the_datagram_source() -> None:
    core = make_core()
    src = ("192.0.2.77", 65000)
    assert resolve(core, core.on_udp(register_pk(), src, T0), T0) == [SendUdp(REG_OK, src)]
    record = core.state.peers.get(B_ID)
    assert record is not None and record.pk == PK_A


# -- normalisation at UDP ingress (§1.3, §4.3): the core relies on it -------------------------


class FakeExecutor:
    def __init__(self, now: float) -> None:
        self.now = now
        self.ran: list[object] = []
        self.udp = UdpOut()

    def clock(self) -> float:
        return self.now

    def run(self, actions: list[object]) -> None:
        self.ran += actions


def test_udp_ingress_normalises_mapped_addresses_before_the_core() -> None:
    from pyhbb.rendezvous.adapters.udp import UdpEndpoint

    core = make_core(serial=1)
    bring_online(core, T0)
    executor = FakeExecutor(T0 + 1)
    endpoint = UdpEndpoint(core, executor)  # type: ignore[arg-type]
    # Dual-stack socket: IPv4 loopback arrives as ::ffff:127.0.0.1 (4-tuple address).
    endpoint.datagram_received(register_peer(), ("::ffff:127.0.0.1", 5000, 0, 0))
    assert executor.ran == [SendUdp(NO_REQUEST_PK, ("127.0.0.1", 5000))]  # loopback: exempt
    executor.ran.clear()
    cu = rm(configure_update=pb.ConfigUpdate(serial=2, rendezvous_servers=["a"]))
    endpoint.datagram_received(cu, ("::ffff:127.0.0.1", 5001, 0, 0))
    assert executor.ran == [ResolveServers(2, ["a"])]
    # A public mapped address compares equal to B's registered IPv4 address.
    core = make_core()
    bring_online(core, T0)
    executor = FakeExecutor(T0 + 1)
    endpoint = UdpEndpoint(core, executor)  # type: ignore[arg-type]
    endpoint.datagram_received(register_peer(), ("::ffff:" + B_ADDR[0], B_ADDR[1], 0, 0))
    assert executor.ran == [SendUdp(NO_REQUEST_PK, B_ADDR)]
