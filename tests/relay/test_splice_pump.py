"""SplicePump on real loopback TCP sockets, without the server around it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from pyhbb.relay.splice_pump import SplicePump

pytestmark = pytest.mark.timeout(60)


class Unlimited:
    chunk = 1 << 20

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.charged = 0

    def consume(self, nbytes: int, now: float) -> float:
        self.charged += nbytes
        return self.delay


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        server, _ = srv.accept()
    for s in (client, server):
        s.setblocking(False)
    return client, server


async def test_pending_bytes_first_then_stream_small_pipe_slow_reader() -> None:
    loop = asyncio.get_running_loop()
    a_peer, a = tcp_pair()  # a_peer plays client A, a is the relay's socket to A
    b, b_peer = tcp_pair()
    closed: list[str] = []
    budget = Unlimited()
    # 8 MiB already read from A before the switch: more than any socket buffer, so the
    # pump must write it in pieces before it may read A again.
    pending = os.urandom(8 << 20)
    pump = SplicePump(
        loop,
        a,
        b,
        budget,
        closed.append,
        pending_a_to_b=pending,
        pending_b_to_a=b"to-a",
        pipe_size=4096,
    )
    pump.start()
    stream = os.urandom(4 << 20)
    r_a, w_a = await asyncio.open_connection(sock=a_peer)
    r_b, w_b = await asyncio.open_connection(sock=b_peer)
    w_a.write(stream)
    got = hashlib.sha256()
    need = len(pending) + len(stream)
    while need:
        chunk = await asyncio.wait_for(r_b.read(min(need, 100_000)), 20)
        assert chunk
        got.update(chunk)
        need -= len(chunk)
        await asyncio.sleep(0)  # a slow reader: the pump must wait for writability
    assert got.digest() == hashlib.sha256(pending + stream).digest()
    assert await asyncio.wait_for(r_a.readexactly(4), 20) == b"to-a"
    assert pump.bytes_a_to_b == len(pending) + len(stream)
    # every byte counts against the limits, the ones read before the switch included
    assert budget.charged == len(pending) + len(stream) + len(b"to-a")
    w_a.write_eof()
    assert await asyncio.wait_for(r_b.read(), 20) == b""
    assert closed and "end of stream" in closed[0]
    assert a.fileno() == -1 and b.fileno() == -1
    w_a.close()
    w_b.close()


async def test_limiter_pause_resumes_reading() -> None:
    loop = asyncio.get_running_loop()
    a_peer, a = tcp_pair()
    b, b_peer = tcp_pair()
    closed: list[str] = []
    pump = SplicePump(loop, a, b, Unlimited(delay=0.05), closed.append)
    pump.start()
    _r_a, w_a = await asyncio.open_connection(sock=a_peer)
    r_b, w_b = await asyncio.open_connection(sock=b_peer)
    for i in range(20):
        w_a.write(bytes([i]) * 1000)
        await w_a.drain()
        assert await asyncio.wait_for(r_b.readexactly(1000), 20) == bytes([i]) * 1000
    assert pump.activity > 20_000 - 1  # resumes count as activity too
    pump.close("test over")
    pump.close("twice is harmless")
    assert closed == ["test over"]
    assert await asyncio.wait_for(r_b.read(), 20) == b""
    w_a.close()
    w_b.close()


async def test_reset_closes_both() -> None:
    loop = asyncio.get_running_loop()
    a_peer, a = tcp_pair()
    b, b_peer = tcp_pair()
    closed: list[str] = []
    SplicePump(loop, a, b, Unlimited(), closed.append).start()
    a_peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    a_peer.close()  # RST
    r_b, w_b = await asyncio.open_connection(sock=b_peer)
    assert await asyncio.wait_for(r_b.read(), 20) == b""
    assert len(closed) == 1
    w_b.close()


async def test_bytes_read_before_the_switch_are_charged_to_the_budget() -> None:
    loop = asyncio.get_running_loop()
    a_peer, a = tcp_pair()
    b, b_peer = tcp_pair()
    budget = Unlimited(delay=0.2)
    pump = SplicePump(loop, a, b, budget, lambda reason: None, pending_a_to_b=b"x" * 5000)
    pump.start()
    assert budget.charged == 5000  # charged at once, before anything else is read
    r_b, w_b = await asyncio.open_connection(sock=b_peer)
    assert await asyncio.wait_for(r_b.readexactly(5000), 20) == b"x" * 5000
    _r_a, w_a = await asyncio.open_connection(sock=a_peer)
    w_a.write(b"later")
    assert await asyncio.wait_for(r_b.readexactly(5), 20) == b"later"  # after the pause
    assert budget.charged == 5005
    pump.close("test over")
    w_a.close()
    w_b.close()
