"""Hostile input: bad bytes are dropped, every size and count is bounded (issue 2 item 9)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from pyhbb.net.forwarded import parse_networks
from pyhbb.store.base import IdTaken, StoreError
from pyhbb.wire import addr_mangle
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import encode_frame, encode_header
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import Msg, TcpClient, UdpPeer, WsClient


async def test_bad_datagrams_are_dropped(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        u = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        valid = Msg(register_peer=pb.RegisterPeer(id="123456789")).SerializeToString()
        for junk in (b"\xff" * 50, valid[:5], os.urandom(3000), b"\x00" * 8000, b""):
            u.send_raw(junk)
        # UDP requests the server deliberately ignores (no reflection)
        u.send(Msg(punch_hole_request=pb.PunchHoleRequest(id="123456789")))
        u.send(Msg(punch_hole_sent=pb.PunchHoleSent(socket_addr=b"\x01\x02", id="x")))
        u.send(Msg(online_request=pb.OnlineRequest(peers=["a"] * 100)))
        assert await u.nothing(0.5)
        assert await u.register_peer("123456789") is True  # still serving


async def test_bad_tcp_input_closes_only_that_connection(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        garbage = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        garbage.send_raw(encode_frame(b"\xff\xfegarbage-not-protobuf"))
        assert await garbage.closed()
        huge = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        huge.send_raw(encode_header(hbbs.opts.max_frame + 1))  # refused from the header alone
        assert await huge.closed()
        big_nat = await TcpClient.connect(hbbs.nat, "127.0.0.2")
        big_nat.send_raw(encode_header(70_000))  # P-1 allows 64 KiB
        assert await big_nat.closed()
        empty = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        empty.send_raw(b"\x00")  # an empty frame closes a non-registered connection
        assert await empty.closed()
        healthy = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        healthy.send(Msg(test_nat_request=pb.TestNatRequest()))
        assert (await healthy.recv_nonkeyexchange()).test_nat_response.port == healthy.local[1]


async def test_idle_connection_is_closed(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        hbbs.server.ctx.idle_timeout = 0.5
        hbbs.server.nat_ctx.idle_timeout = 0.5
        for endpoint in (hbbs.tcp, hbbs.nat):
            c = await TcpClient.connect(endpoint, "127.0.0.2")
            c.send_raw(b"\x08")  # half a frame, then silence
            assert await c.closed(timeout=5)


async def test_connection_limit_per_ip(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path, max_connections_per_ip=3) as hbbs:
        held = [await TcpClient.connect(hbbs.tcp, "127.0.0.2") for _ in range(3)]
        for c in held:
            await c.recv()  # the KeyExchange greeting: accepted
        extra = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        assert await extra.closed()
        other = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        assert (await other.recv()).WhichOneof("union") == "key_exchange"
        held[0].close()
        await asyncio.sleep(0.2)
        again = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        assert (await again.recv()).WhichOneof("union") == "key_exchange"


async def test_message_flood_on_one_connection_is_cut(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        ask = Msg(punch_hole_request=pb.PunchHoleRequest(id="nobody1", licence_key=hbbs.public_key))
        for _ in range(5):  # a real client resends a few times: all answered
            c.send(ask)
            resp = (await c.recv_nonkeyexchange()).punch_hole_response
            assert resp.failure == pb.PunchHoleResponse.ID_NOT_EXIST
        for _ in range(200):
            c.send(ask)
        answers = 0
        try:
            while True:
                msg = await c.recv(timeout=3)
                answers += msg.WhichOneof("union") == "punch_hole_response"
        except (EOFError, ConnectionResetError):
            pass
        assert answers < 200  # cut off before the flood was served


async def test_register_flood_from_one_ip_is_bounded(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        u = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        results = []
        for batch in range(10):  # paced so that no datagram is lost in socket buffers
            for i in range(50):
                msg = pb.RegisterPk(id=f"flood{batch:03d}{i:03d}", uuid=b"u", pk=b"k" * 32)
                u.send(Msg(register_pk=msg))
            for _ in range(50):
                results.append((await u.recv(timeout=5)).register_pk_response.result)
        ok = results.count(pb.RegisterPkResponse.OK)
        assert len(results) == 500
        assert ok == 32  # upstream's burst: the first is free, then 31 more
        assert results.count(pb.RegisterPkResponse.TOO_FREQUENT) == 500 - ok
        assert len(hbbs.server.core.state.peers) == ok


async def test_forwarded_headers_only_from_trusted_proxies(tmp_path: Path) -> None:
    spoof = {"X-Real-IP": "203.0.113.9"}
    for trusted, expected_ip in ((["10.0.0.0/8"], "127.0.0.4"), (["127.0.0.4"], "203.0.113.9")):
        workdir = tmp_path / trusted[0].replace("/", "_")
        workdir.mkdir()
        async with running_hbbs(workdir, trusted_proxies=parse_networks(trusted)) as hbbs:
            b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
            await b.register("123456789")
            a = await WsClient.connect(hbbs.ws, headers=spoof, local="127.0.0.4")
            await a.send(
                Msg(
                    punch_hole_request=pb.PunchHoleRequest(
                        id="123456789", licence_key=hbbs.public_key
                    )
                )
            )
            punch = (await b.recv_kind("punch_hole")).punch_hole
            ip, port = addr_mangle.decode(punch.socket_addr)
            assert ip == expected_ip
            assert port != 0  # the real source port keeps requester keys unique
            await a.close()
            b.close()


async def test_database_failures_answer_server_error_and_recover(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        store = hbbs.server.executor.store
        real_insert, real_get = store.insert, store.get_many

        async def broken(*args: object) -> None:
            raise StoreError("disk I/O error (simulated)")

        store.insert = broken  # type: ignore[method-assign]
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        assert (
            await b.register_pk("123456789", b"u", b"k" * 32) == pb.RegisterPkResponse.SERVER_ERROR
        )
        assert "123456789" not in hbbs.server.core.state.peers  # nothing half-registered
        store.get_many = broken  # type: ignore[method-assign]
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(
            Msg(punch_hole_request=pb.PunchHoleRequest(id="987654321", licence_key=hbbs.public_key))
        )
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert not resp.socket_addr and "database" in resp.other_failure
        store.insert, store.get_many = real_insert, real_get  # type: ignore[method-assign]
        assert await b.register_pk("123456789", b"u", b"k" * 32) == pb.RegisterPkResponse.OK


async def test_each_database_failure_is_logged_exactly_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The core alone logs a store failure (the executor only reports it): one record per
    failure, with the traceback only when the store itself is broken."""
    caplog.set_level(logging.INFO, logger="pyhbb")
    R = pb.RegisterPkResponse

    def problems() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno >= logging.WARNING]

    async def down(*args: object) -> None:
        raise StoreError("disk I/O error (simulated)")

    async def broken(*args: object) -> None:
        raise RuntimeError("store bug (simulated)")

    async def taken(*args: object) -> None:
        raise IdTaken("UNIQUE constraint failed: peer.id (simulated)")

    async with running_hbbs(tmp_path) as hbbs:
        store = hbbs.server.executor.store
        real_insert, real_get = store.insert, store.get_many
        b = await UdpPeer.open(hbbs.udp, "127.0.0.2")
        caplog.clear()

        store.insert = down  # type: ignore[method-assign]
        assert await b.register_pk("111111111", b"u", b"k" * 32) == R.SERVER_ERROR
        (record,) = problems()
        assert record.levelno == logging.ERROR and record.exc_info is None
        assert "111111111" in record.getMessage() and "simulated" in record.getMessage()

        caplog.clear()
        store.insert = broken  # type: ignore[method-assign]
        assert await b.register_pk("222222222", b"u", b"k" * 32) == R.SERVER_ERROR
        (record,) = problems()
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert "222222222" in record.getMessage()

        caplog.clear()
        store.insert = real_insert  # type: ignore[method-assign]
        store.get_many = down  # type: ignore[method-assign]
        a = await TcpClient.connect(hbbs.tcp, "127.0.0.3")
        a.send(
            Msg(punch_hole_request=pb.PunchHoleRequest(id="987654321", licence_key=hbbs.public_key))
        )
        assert "database" in (await a.recv_nonkeyexchange()).punch_hole_response.other_failure
        (record,) = problems()
        assert record.levelno == logging.ERROR and "987654321" in record.getMessage()

        store.get_many = real_get  # type: ignore[method-assign]
        assert await b.register_pk("333333333", b"u", b"k" * 32) == R.OK
        caplog.clear()
        store.rename = taken  # type: ignore[method-assign]
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        c.send(Msg(register_pk=pb.RegisterPk(id="new-name-1", old_id="333333333", uuid=b"u")))
        assert (await c.recv_nonkeyexchange()).register_pk_response.result == R.ID_EXISTS
        (record,) = problems()
        assert record.levelno == logging.WARNING and "new-name-1" in record.getMessage()
        a.close()
        c.close()
        b.close()


async def test_trickled_frame_does_not_keep_a_connection_open(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        hbbs.server.ctx.idle_timeout = 1.0
        c = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        c.send_raw(encode_header(1000))
        sent = 0
        try:
            for _ in range(30):  # one byte every 0.1 s: never a whole frame
                c.send_raw(b"x")
                sent += 1
                await asyncio.sleep(0.1)
        except (RuntimeError, ConnectionError):  # the server has closed it
            pass
        assert await c.closed(timeout=3)
        assert sent < 30  # closed while it was still trickling


async def test_large_frames_only_on_an_encrypted_connection(tmp_path: Path) -> None:
    async with running_hbbs(tmp_path) as hbbs:
        plain = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        plain.send_raw(encode_header(100_000))  # over 64 KiB in clear: refused at once
        assert await plain.closed()
        secure = await TcpClient.connect(hbbs.tcp, "127.0.0.2")
        await secure.secure(hbbs.public_key)
        big = Msg(online_request=pb.OnlineRequest(peers=["x" * 100] * 1500))  # ~155 KB
        secure.send(big)
        assert len((await secure.recv()).online_response.states) == 1500 // 8 + 1
