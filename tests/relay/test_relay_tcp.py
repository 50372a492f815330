"""Two RustDesk-like TCP clients through a real hbbr on loopback (§8)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from pyhbb.relay.splice_pump import SplicePump
from pyhbb.wire.framing import encode_frame
from tests.relay.clients import (
    closed_by_server,
    read_exactly,
    request_relay,
    tcp_connect,
    tcp_relay_client,
)
from tests.relay.conftest import StartRelay

pytestmark = pytest.mark.timeout(120)

CHUNK = 1 << 20


async def pump_both_ways(
    r1: asyncio.StreamReader,
    w1: asyncio.StreamWriter,
    r2: asyncio.StreamReader,
    w2: asyncio.StreamWriter,
    size: int,
) -> None:
    """Send ``size`` random bytes each way at the same time; check SHA-256 on arrival."""
    seed1, seed2 = os.urandom(16), os.urandom(16)

    def block(seed: bytes, i: int) -> bytes:
        return hashlib.shake_256(seed + i.to_bytes(4, "little")).digest(CHUNK)

    async def send(w: asyncio.StreamWriter, seed: bytes) -> str:
        h = hashlib.sha256()
        for i in range(size // CHUNK):
            data = block(seed, i)
            h.update(data)
            w.write(data)
            await w.drain()
        return h.hexdigest()

    async def recv(r: asyncio.StreamReader) -> str:
        h = hashlib.sha256()
        left = size
        while left:
            data = await r.read(min(left, CHUNK))
            assert data, "relay closed early"
            h.update(data)
            left -= len(data)
        return h.hexdigest()

    sent1, sent2, got2, got1 = await asyncio.wait_for(
        asyncio.gather(send(w1, seed1), send(w2, seed2), recv(r2), recv(r1)), 90
    )
    assert got2 == sent1
    assert got1 == sent2


async def test_pair_and_move_64_mib_each_way(start_relay: StartRelay) -> None:
    relay = await start_relay()
    r1, w1 = await tcp_relay_client(relay.opts.port, "uuid-64", "127.0.0.2")
    r2, w2 = await tcp_relay_client(relay.opts.port, "uuid-64", "127.0.0.3")
    await pump_both_ways(r1, w1, r2, w2, 64 << 20)
    assert len(relay.sessions) == 1
    (session,) = relay.sessions
    pump = session.mover
    assert isinstance(pump, SplicePump)  # both plain TCP: raw splice mode
    assert pump.bytes_a_to_b == pump.bytes_b_to_a == 64 << 20
    w1.close()
    assert await closed_by_server(r2)
    w2.close()


async def test_bytes_sent_right_after_request_come_first_and_in_order(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    port = relay.opts.port
    # The controlled side pipelines its first end-to-end frames with RequestRelay,
    # in the same write, before the other side has even connected.
    early1 = b"".join(encode_frame(f"first-{i}".encode()) for i in range(50))
    r1, w1 = await tcp_relay_client(port, "uuid-early", "127.0.0.2", extra=early1)
    w1.write(b"then-more-before-pairing")
    await w1.drain()
    await asyncio.sleep(0.3)
    # Opaque bytes that would read as a 1 GiB frame header: never parsed by the relay.
    early2 = b"\xff\xff\xff\xffhello from the second side"
    r2, w2 = await tcp_relay_client(port, "uuid-early", "127.0.0.3", extra=early2)
    w1.write(b"|after")
    await w1.drain()
    expected1 = early1 + b"then-more-before-pairing|after"
    assert await read_exactly(r2, len(expected1)) == expected1
    assert await read_exactly(r1, len(early2)) == early2
    w2.write(b"x" * 100_000)
    await w2.drain()
    assert await read_exactly(r1, 100_000) == b"x" * 100_000
    w1.close()
    w2.close()


async def test_non_minimal_header_and_second_frame_in_first_read(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    port = relay.opts.port
    payload = request_relay("uuid-nm")
    # 2-byte header for a short payload: legal, and the bytes after it stay verbatim.
    header = ((len(payload) << 2) | 1).to_bytes(2, "little")
    _r1, w1 = await tcp_connect(port, "127.0.0.2")
    tail = b"\x15\x00abcde" + b"raw"
    w1.write(header + payload + tail)
    await w1.drain()
    r2, w2 = await tcp_relay_client(port, "uuid-nm", "127.0.0.3")
    assert await read_exactly(r2, len(tail)) == tail
    w1.close()
    w2.close()


async def test_ipv6_loopback_client(start_relay: StartRelay) -> None:
    relay = await start_relay()
    port = relay.opts.port
    _r1, w1 = await tcp_relay_client(port, "uuid-v6", "::1", host="::1")
    r2, w2 = await tcp_relay_client(port, "uuid-v6", "127.0.0.3")
    w1.write(b"over v6")
    await w1.drain()
    assert await read_exactly(r2, 7) == b"over v6"
    (session,) = relay.sessions
    assert session.first.addr[0] == "::1"
    assert session.second.addr[0] == "127.0.0.3"  # IPv4-mapped normalised at ingress
    w1.close()
    w2.close()


async def test_key_mismatch_never_pairs(start_relay: StartRelay) -> None:
    relay = await start_relay(licence_key="the-key")
    port = relay.opts.port
    r1, w1 = await tcp_relay_client(port, "uuid-k", "127.0.0.2", licence_key="the-key")
    rb, wb = await tcp_relay_client(port, "uuid-k", "127.0.0.3", licence_key="wrong")
    assert await closed_by_server(rb)
    rn, wn = await tcp_relay_client(port, "uuid-k", "127.0.0.4", licence_key="")
    assert await closed_by_server(rn)
    assert not relay.sessions and len(relay.pairing) == 1
    _r2, w2 = await tcp_relay_client(port, "uuid-k", "127.0.0.5", licence_key="the-key")
    w2.write(b"ok")
    await w2.drain()
    assert await read_exactly(r1, 2) == b"ok"
    for w in (w1, wb, wn, w2):
        w.close()


async def test_unpaired_side_closed_after_wait_timeout(start_relay: StartRelay) -> None:
    relay = await start_relay(pair_wait_timeout=1.0)
    r1, w1 = await tcp_relay_client(relay.opts.port, "uuid-alone", "127.0.0.2")
    assert await closed_by_server(r1, timeout=15)
    assert len(relay.pairing) == 0
    # A later client with the same uuid waits anew rather than pairing with a ghost.
    _r2, w2 = await tcp_relay_client(relay.opts.port, "uuid-alone", "127.0.0.3")
    await asyncio.sleep(0.2)
    assert len(relay.pairing) == 1 and not relay.sessions
    w1.close()
    w2.close()


async def test_idle_session_ends(start_relay: StartRelay) -> None:
    relay = await start_relay(idle_timeout=2.0)
    r1, w1 = await tcp_relay_client(relay.opts.port, "uuid-idle", "127.0.0.2")
    r2, w2 = await tcp_relay_client(relay.opts.port, "uuid-idle", "127.0.0.3")
    w1.write(b"ping")
    await w1.drain()
    assert await read_exactly(r2, 4) == b"ping"
    assert await closed_by_server(r1, timeout=15)
    assert await closed_by_server(r2, timeout=15)
    assert not relay.sessions
    w1.close()
    w2.close()


async def test_one_side_closing_closes_the_other_after_delivering(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    r1, w1 = await tcp_relay_client(relay.opts.port, "uuid-hc", "127.0.0.2")
    r2, w2 = await tcp_relay_client(relay.opts.port, "uuid-hc", "127.0.0.3")
    w1.write(b"last words" * 1000)
    w1.write_eof()  # half-close: the relay ends the session once these bytes are through
    assert await read_exactly(r2, 10_000) == b"last words" * 1000
    assert await closed_by_server(r2)
    assert await closed_by_server(r1)
    w1.close()
    w2.close()


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"\x00", id="empty-frame"),
        pytest.param(encode_frame(b"\x0a\x00"), id="not-request-relay"),
        pytest.param(encode_frame(b"\xff\xff\xff"), id="garbage"),
        pytest.param(encode_frame(request_relay("")), id="empty-uuid"),
        pytest.param((70_000 << 2 | 2).to_bytes(3, "little"), id="first-frame-too-big"),
    ],
)
async def test_bad_first_message_closes(start_relay: StartRelay, first: bytes) -> None:
    relay = await start_relay()
    r, w = await tcp_connect(relay.opts.port, "127.0.0.2")
    w.write(first)
    await w.drain()
    assert await closed_by_server(r)
    assert len(relay.pairing) == 0
    w.close()


async def test_no_first_message_times_out(start_relay: StartRelay) -> None:
    relay = await start_relay(first_message_timeout=1.0)
    r, w = await tcp_connect(relay.opts.port, "127.0.0.2")
    assert await closed_by_server(r, timeout=15)
    w.close()


async def test_waiting_connections_bounded_per_ip(start_relay: StartRelay) -> None:
    relay = await start_relay(max_waiting_per_ip=2)
    port = relay.opts.port
    conns = [await tcp_relay_client(port, f"uuid-{i}", "127.0.0.2") for i in range(2)]
    r3, w3 = await tcp_relay_client(port, "uuid-3", "127.0.0.2")
    assert await closed_by_server(r3)
    r4, w4 = await tcp_relay_client(port, "uuid-4", "127.0.0.3")  # another host is fine
    await asyncio.sleep(0.2)
    assert len(relay.pairing) == 3
    for _, w in [*conns, (r3, w3), (r4, w4)]:
        w.close()
