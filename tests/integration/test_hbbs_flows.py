"""Every hbbs flow of docs/protocol.md §6 over real UDP, TCP and WebSocket sockets on loopback.

Different 127.x.y.z addresses play hosts on different networks; one address plays a LAN.
"""

from __future__ import annotations

import base64
from pathlib import Path

from nacl.signing import VerifyKey

from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.message_pb2 import IdPk
from tests.support.hbbs_server import RunningHbbs, running_hbbs
from tests.support.rdclient import Msg, TcpClient, UdpPeer, WsClient

B_ID = "123456789"
B_PK = b"\x42" * 32


def verify_pk(server: RunningHbbs, signed: bytes, peer_id: str, pk: bytes) -> None:
    idpk = IdPk()
    idpk.ParseFromString(VerifyKey(base64.b64decode(server.public_key)).verify(signed))
    assert (idpk.id, idpk.pk) == (peer_id, pk)


def punch_request(server: RunningHbbs, peer_id: str = B_ID, **kw: object) -> Msg:
    return Msg(
        punch_hole_request=pb.PunchHoleRequest(
            id=peer_id,
            licence_key=server.public_key,
            version="1.4.2",
            **kw,  # type: ignore[arg-type]
        )
    )


async def test_udp_registration_and_online(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        assert await b.register_peer(B_ID) is True  # unknown: send your key
        assert await b.register_pk(B_ID, b"uuid-b", B_PK) == pb.RegisterPkResponse.OK
        assert await b.register_peer(B_ID) is False
        q = await TcpClient.connect(hbbs.nat, "127.0.0.9")
        q.send(Msg(online_request=pb.OnlineRequest(id="x", peers=["nobody", B_ID, "z"])))
        assert (await q.recv()).online_response.states == b"\x40"
        assert await q.closed()
        b.close()


async def test_tcp_punch_flow(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs, nat_type=pb.ASYMMETRIC))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        assert addr_mangle.decode(punch.socket_addr) == a.local
        assert punch.nat_type == pb.ASYMMETRIC
        # B answers on a new connection from its own host, then closes.
        b_tcp = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        b_tcp.send(
            Msg(
                punch_hole_sent=pb.PunchHoleSent(
                    socket_addr=punch.socket_addr, id=B_ID, nat_type=pb.SYMMETRIC, version="1.4.2"
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert addr_mangle.decode(resp.socket_addr) == b_tcp.local
        assert resp.WhichOneof("union") == "nat_type" and resp.nat_type == pb.SYMMETRIC
        verify_pk(hbbs, resp.pk, B_ID, B_PK)
        assert await b_tcp.closed()
        a.close()
        b.close()


async def test_same_intranet_gets_fetch_local_addr(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.5")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.5")
        a.send(punch_request(hbbs))
        fetch = (await b.recv_kind("fetch_local_addr")).fetch_local_addr
        assert addr_mangle.decode(fetch.socket_addr) == a.local
        b_tcp = await TcpClient.connect(hbbs.tcp, "127.0.0.5")
        lan = addr_mangle.encode(("192.168.1.20", 21118))
        b_tcp.send(
            Msg(
                local_addr=pb.LocalAddr(
                    socket_addr=fetch.socket_addr, local_addr=lan, id=B_ID, version="1.4.2"
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert resp.socket_addr == lan and resp.is_local
        verify_pk(hbbs, resp.pk, B_ID, B_PK)


async def test_websocket_punch_never_fetches_local_addr(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.1")
        await b.register(B_ID, pk=B_PK)
        a = await WsClient.connect(hbbs.ws)
        await a.send(punch_request(hbbs))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        b_tcp = await TcpClient.connect(hbbs.tcp, "127.0.0.1")
        b_tcp.send(
            Msg(
                relay_response=pb.RelayResponse(
                    socket_addr=punch.socket_addr,
                    uuid="u-1",
                    relay_server="relay.example:21117",
                    id=B_ID,
                    version="1.4.2",
                )
            )
        )
        resp = (await a.recv()).relay_response
        assert resp.uuid == "u-1" and resp.WhichOneof("union") == "pk"
        assert not resp.socket_addr
        verify_pk(hbbs, resp.pk, B_ID, B_PK)
        await a.close()


async def test_relay_requested_by_a(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, relay_servers=["relay.example.com"]) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(
            Msg(
                request_relay=pb.RequestRelay(
                    id=B_ID, uuid="uuid-a", secure=True, relay_server="relay.example.com"
                )
            )
        )
        fwd = (await b.recv_kind("request_relay")).request_relay
        assert fwd.uuid == "uuid-a" and fwd.secure
        assert addr_mangle.decode(fwd.socket_addr) == a.local
        b_tcp = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        b_tcp.send(
            Msg(relay_response=pb.RelayResponse(socket_addr=fwd.socket_addr, version="1.4.2"))
        )
        resp = (await a.recv_nonkeyexchange()).relay_response
        assert resp.WhichOneof("union") is None and not resp.refuse_reason
        assert resp.version == "1.4.2"


async def test_punch_failures(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs, peer_id="999999999"))
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert not resp.socket_addr and resp.failure == pb.PunchHoleResponse.ID_NOT_EXIST
        bad = Msg(punch_hole_request=pb.PunchHoleRequest(id=B_ID, licence_key="wrong"))
        a.send(bad)
        resp = (await a.recv()).punch_hole_response
        assert resp.failure == pb.PunchHoleResponse.LICENSE_MISMATCH


async def test_peer_survives_restart_and_reads_offline(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, uuid=b"uuid-b", pk=B_PK)
        b.close()
    async with running_hbbs(tmp_path) as hbbs:
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(punch_request(hbbs))
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert resp.failure == pb.PunchHoleResponse.OFFLINE  # known from the database
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        # The punch request loaded B's row; from its stored IP its heartbeat is enough.
        assert await b.register_peer(B_ID) is False
        a.send(punch_request(hbbs))
        assert (await b.recv_kind("punch_hole")).punch_hole.socket_addr
        # Another machine cannot take the id.
        other = await UdpPeer.open(hbbs.udp, "127.0.0.4")
        assert await other.register_pk(B_ID, b"uuid-x", B_PK) == pb.RegisterPkResponse.UUID_MISMATCH


async def test_nat_test_from_one_local_port(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        first = await TcpClient.connect(hbbs.tcp, "127.0.0.7", local_port=0)
        port = first.local[1]
        first.send(Msg(test_nat_request=pb.TestNatRequest(serial=3)))
        r1 = (await first.recv_nonkeyexchange()).test_nat_response
        first.close()
        second = await TcpClient.connect(hbbs.nat, "127.0.0.7", local_port=port)
        second.send(Msg(test_nat_request=pb.TestNatRequest(serial=3)))
        r2 = (await second.recv_nonkeyexchange()).test_nat_response
        assert r1.port == r2.port == port


async def test_online_request_on_every_port(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, pk=B_PK)
        ids = [B_ID if i in (0, 2, 8, 9) else f"nobody{i}" for i in range(10)]
        ask = Msg(online_request=pb.OnlineRequest(id="me", peers=ids))
        for endpoint in (hbbs.nat, hbbs.tcp):
            c = await TcpClient.connect(endpoint, "127.0.0.3")
            c.send(ask)
            assert (await c.recv_nonkeyexchange()).online_response.states == b"\xa0\xc0"
        w = await WsClient.connect(hbbs.ws)
        await w.send(ask)
        assert (await w.recv()).online_response.states == b"\xa0\xc0"


async def test_secure_tcp_punch(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        await a.secure(hbbs.public_key)
        a.send(punch_request(hbbs, token="api-token"))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        b_tcp = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        b_tcp.send(
            Msg(
                punch_hole_sent=pb.PunchHoleSent(
                    socket_addr=punch.socket_addr, id=B_ID, version="1.4.2"
                )
            )
        )
        resp = (await a.recv()).punch_hole_response  # decrypted with the session key
        assert addr_mangle.decode(resp.socket_addr) == b_tcp.local
        verify_pk(hbbs, resp.pk, B_ID, B_PK)
