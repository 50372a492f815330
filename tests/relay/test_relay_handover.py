"""Two TCP clients paired: their sockets leave the asyncio transports for the splice pump
without the connections noticing (no FIN, no RST) and without a descriptor left behind."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter

import pytest

from pyhbb.relay.splice_pump import SplicePump
from pyhbb.wire.framing import encode_frame
from tests.relay.clients import request_relay
from tests.relay.conftest import StartRelay

pytestmark = pytest.mark.timeout(60)


def fd_kinds() -> Counter[str]:
    kinds: Counter[str] = Counter()
    for name in os.listdir("/proc/self/fd"):
        try:
            kinds[os.readlink(f"/proc/self/fd/{name}").split(":", 1)[0]] += 1
        except OSError:
            continue
    return kinds


def nothing_to_read(sock: socket.socket) -> bool:
    """True while the connection is open and idle: no data, no FIN, no RST."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    return False  # data, or end of stream


async def connect(port: int, src: str, first: bytes) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.bind((src, 0))
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, first)
    return sock


async def test_handover_to_splice_is_invisible_to_the_clients(start_relay: StartRelay) -> None:
    relay = await start_relay()
    loop = asyncio.get_running_loop()
    port = relay.opts.port
    a = await connect(port, "127.0.0.2", encode_frame(request_relay("ho")) + b"from a early")
    b = await connect(port, "127.0.0.3", encode_frame(request_relay("ho-other")))
    await asyncio.sleep(0.3)
    before = fd_kinds()  # a and b waiting (b under another uuid)
    c = await connect(port, "127.0.0.4", encode_frame(request_relay("ho")) + b"from c early")
    for _ in range(100):
        if relay.sessions:
            break
        await asyncio.sleep(0.02)
    (session,) = relay.sessions
    assert isinstance(session.mover, SplicePump)
    await asyncio.sleep(0.5)  # time for a stray FIN or RST to arrive
    assert await asyncio.wait_for(loop.sock_recv(a, 100), 10) == b"from c early"
    assert await asyncio.wait_for(loop.sock_recv(c, 100), 10) == b"from a early"
    assert nothing_to_read(a) and nothing_to_read(c)
    for i in range(20):
        await loop.sock_sendall(a, b"ping %d" % i)
        assert await asyncio.wait_for(loop.sock_recv(c, 100), 10) == b"ping %d" % i
        await loop.sock_sendall(c, b"pong %d" % i)
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 10) == b"pong %d" % i
    # One more client pair: 2 more sockets each side; the hand-over itself kept none
    # (the transports' descriptors are gone) and added the pump's 4 pipe ends.
    after = fd_kinds()
    assert after["socket"] == before["socket"] + 2
    assert after["pipe"] == before["pipe"] + 4
    for s in (a, b, c):
        s.close()
