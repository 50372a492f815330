"""The P-1 console for loopback text, protocol for everything else (§9, §9.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import Msg, TcpClient, UdpPeer


async def console(addr: tuple[str, int], line: bytes, local: str = "127.0.0.1") -> str:
    reader, writer = await asyncio.open_connection(*addr, local_addr=(local, 0))
    writer.write(line)
    async with asyncio.timeout(5):
        out = await reader.read()
    writer.close()
    return out.decode()


async def test_console_commands(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, relay_servers=["127.0.0.1:1"]) as hbbs:
        assert (await console(hbbs.nat, b"h")).startswith("relay-servers(rs) <separated by ,>\n")
        assert await console(hbbs.nat, b"rs") == "127.0.0.1:1\n"
        assert await console(hbbs.nat, b"rs localhost:21117,127.0.0.2") == ""
        assert await console(hbbs.nat, b"relay-servers\n") == "localhost:21117\n127.0.0.2\n"
        assert await console(hbbs.nat, b"aur") == "ALWAYS_USE_RELAY: false\n"
        assert await console(hbbs.nat, b"aur y") == ""
        assert await console(hbbs.nat, b"always-use-relay") == "ALWAYS_USE_RELAY: true\n"
        # upstream's bug wiped the relay list here; ours keeps it
        assert await console(hbbs.nat, b"rs") == "localhost:21117\n127.0.0.2\n"
        assert await console(hbbs.nat, b"tg 1.2.3.4") in ('"localhost:21117"\n', '"127.0.0.2"\n')
        assert await console(hbbs.nat, b"nonsense") == ""
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        await b.register("123456789")
        assert (await console(hbbs.nat, b"ib")).splitlines()[0] == "1"
        assert (await console(hbbs.nat, b"ib 127.0.0.2")).splitlines()[1].startswith("0/")
        stats = await console(hbbs.nat, b"stats")
        assert "peers_online: 1\n" in stats


async def test_console_only_from_loopback_and_protocol_from_loopback(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        # A RustDesk client on the server machine itself: its frames are protocol.
        c = await TcpClient.connect(hbbs.nat, "127.0.0.1")
        c.send(Msg(test_nat_request=pb.TestNatRequest(serial=3)))
        assert (await c.recv()).test_nat_response.port == c.local[1]
        c = await TcpClient.connect(hbbs.nat, "127.0.0.1")
        c.send(Msg(online_request=pb.OnlineRequest(peers=["a"])))
        assert (await c.recv()).online_response.states == b"\x00"


async def test_console_can_be_disabled(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, console=False) as hbbs:
        # Read as a frame header announcing a huge frame: refused, no console output.
        try:
            out = await console(hbbs.nat, b"stats")
        except ConnectionResetError:
            out = ""
        assert out == ""


async def test_single_byte_console_command_after_short_wait(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        reader, writer = await asyncio.open_connection(*hbbs.nat)
        writer.write(b"h")  # could be the first byte of a frame: decided after 1 s
        async with asyncio.timeout(5):
            out = await reader.read()
        assert out.decode().startswith("relay-servers(rs)")
