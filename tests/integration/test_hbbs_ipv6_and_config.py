"""IPv6 clients on the dual-stack listeners, ConfigUpdate by serial, relay health checks and
the UDP self-test."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from pyhbb.rendezvous import watchdog
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from tests.integration.test_hbbs_flows import B_ID, B_PK, punch_request, verify_pk
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import Msg, TcpClient, UdpPeer


async def test_ipv6_peers_get_the_18_byte_address_form(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        port = hbbs.opts.port
        b = await UdpPeer.open(("::1", port), "::1")
        await b.register(B_ID, pk=B_PK)
        a = await TcpClient.connect(("::1", port), "::1")
        a.send(punch_request(hbbs))
        fetch = (await b.recv_kind("fetch_local_addr")).fetch_local_addr  # same host
        assert len(fetch.socket_addr) == 18
        assert addr_mangle.decode(fetch.socket_addr) == ("::1", a.local[1])
        b_tcp = await TcpClient.connect(("::1", port), "::1")
        b_tcp.send(
            Msg(
                punch_hole_sent=pb.PunchHoleSent(
                    socket_addr=fetch.socket_addr, id=B_ID, version="1.4.2"
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert addr_mangle.decode(resp.socket_addr) == ("::1", b_tcp.local[1])
        verify_pk(hbbs, resp.pk, B_ID, B_PK)
        # An IPv4 peer and an IPv6 peer on the same listeners are different hosts.
        v4 = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        v4.send(punch_request(hbbs))
        punch = (await b.recv_kind("punch_hole")).punch_hole
        assert addr_mangle.decode(punch.socket_addr) == ("127.0.0.3", v4.local[1])


async def test_config_update_by_serial(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, serial=5, rendezvous_servers=["rs.example.com"]) as hbbs:
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        # ConfigUpdate goes to registered peers at their registered address only (issue 12)
        assert await b.register_pk(B_ID, b"uuid-cu", B_PK) == pb.RegisterPkResponse.OK
        b.send(Msg(register_peer=pb.RegisterPeer(id=B_ID, serial=3)))
        kinds = {(await b.recv()).WhichOneof("union") for _ in range(2)}
        assert kinds == {"register_peer_response", "configure_update"}
        b.send(Msg(register_peer=pb.RegisterPeer(id=B_ID, serial=5)))
        await b.recv_kind("register_peer_response")
        assert await b.nothing()
        nat = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        nat.send(Msg(test_nat_request=pb.TestNatRequest(serial=3)))
        cu = (await nat.recv_nonkeyexchange()).test_nat_response.cu
        assert (cu.serial, list(cu.rendezvous_servers)) == (5, ["rs.example.com"])
        # A loopback ConfigUpdate with a higher serial is adopted (resolvable names only).
        local = await UdpPeer.open(hbbs.udp, "127.0.0.1")
        local.send(
            Msg(
                configure_update=pb.ConfigUpdate(
                    serial=7, rendezvous_servers=["localhost", "no-such-host.invalid"]
                )
            )
        )
        async with asyncio.timeout(5):
            while hbbs.server.core.state.serial != 7:
                await asyncio.sleep(0.05)
        assert hbbs.server.core.state.rendezvous_servers == ["localhost"]


async def test_relay_rotation_uses_only_reachable_relays(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    up = f"127.0.0.1:{listener.getsockname()[1]}"
    closed = socket.create_server(("127.0.0.1", 0))
    down = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    try:
        async with running_hbbs(tmp_path, relay_servers=[up, down]) as hbbs:
            relays = hbbs.server.core.state.relays
            async with asyncio.timeout(10):
                while relays.reachable != [up]:
                    await asyncio.sleep(0.1)
            b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
            await b.register(B_ID, pk=B_PK)
            a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
            for _ in range(3):
                a.send(punch_request(hbbs))
                assert (await b.recv_kind("punch_hole")).punch_hole.relay_server == up
    finally:
        listener.close()


async def test_udp_self_test_stops_a_deaf_server() -> None:
    deaf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deaf.bind(("127.0.0.1", 0))  # receives the probes, never answers
    failed = asyncio.Event()
    old_deadline, watchdog.DEADLINE = watchdog.DEADLINE, 0.5
    try:
        async with asyncio.timeout(10):
            await watchdog.run(deaf.getsockname(), failed.set)
    finally:
        watchdog.DEADLINE = old_deadline
        deaf.close()
    assert failed.is_set()


async def test_udp_self_test_passes_against_hbbs(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        failed = asyncio.Event()
        dest = watchdog.target("", hbbs.opts.port, None)
        assert dest == ("127.0.0.1", hbbs.opts.port)
        old_deadline, watchdog.DEADLINE = watchdog.DEADLINE, 2.5
        task = asyncio.ensure_future(watchdog.run(dest, failed.set))
        try:
            await asyncio.sleep(4)
            assert not failed.is_set() and not task.done()
        finally:
            watchdog.DEADLINE = old_deadline
            task.cancel()
        assert watchdog.target("no", 1, None) is None
