"""WebSocket relaying: TCP<->WS and WS<->WS bridging (§2.4, §8.3, §1.5)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from pyhbb.relay.adapters.base import WRITE_HIGH
from pyhbb.relay.adapters.ws import WsClient
from pyhbb.relay.ws_bridge import Bridge
from pyhbb.wire.framing import FrameDecoder, encode_frame
from tests.relay.clients import closed_by_server, read_exactly, tcp_relay_client, ws_relay_client
from tests.relay.conftest import StartRelay

pytestmark = pytest.mark.timeout(60)


async def read_frames(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    decoder = FrameDecoder(1 << 24)
    frames: list[bytes] = []
    while len(frames) < count:
        data = await asyncio.wait_for(reader.read(65536), 20)
        assert data, "closed early"
        frames += decoder.feed(data)
    return frames


@pytest.mark.parametrize("ws_first", [True, False], ids=["ws-waits", "tcp-waits"])
async def test_tcp_ws_bridge(start_relay: StartRelay, ws_first: bool) -> None:
    relay = await start_relay()
    port, ws_port = relay.opts.port, relay.opts.ws_port
    early = encode_frame(b"early frame") + encode_frame(b"") + encode_frame(b"second")
    if ws_first:
        ws = await ws_relay_client(ws_port, "uuid-tw", src="127.0.0.2")
        await ws.send(b"ws early")
        await asyncio.sleep(0.2)
        r, w = await tcp_relay_client(port, "uuid-tw", "127.0.0.3", extra=early)
    else:
        r, w = await tcp_relay_client(port, "uuid-tw", "127.0.0.3", extra=early)
        await asyncio.sleep(0.2)
        ws = await ws_relay_client(ws_port, "uuid-tw", src="127.0.0.2")
        await ws.send(b"ws early")
    # TCP frames -> one binary message each; the empty frame (heartbeat) is dropped.
    assert await asyncio.wait_for(ws.recv(), 20) == b"early frame"
    assert await asyncio.wait_for(ws.recv(), 20) == b"second"
    # Binary messages -> frames; text and empty messages are not forwarded.
    await ws.send("text is not forwarded")
    await ws.send(b"")
    big = bytes(range(256)) * 4096  # 1 MiB: a 3-byte frame header
    await ws.send(big)
    assert await read_frames(r, 2) == [b"ws early", big]
    # A frame split across several TCP writes is still one message.
    frame = encode_frame(b"split" * 10_000)
    for i in range(0, len(frame), 7_000):
        w.write(frame[i : i + 7_000])
        await w.drain()
    assert await asyncio.wait_for(ws.recv(), 20) == b"split" * 10_000
    (session,) = relay.sessions
    assert session.kind in ("ws-tcp", "tcp-ws") and isinstance(session.mover, Bridge)
    await ws.close()
    assert await closed_by_server(r)
    w.close()


async def test_ws_ws_bridge(start_relay: StartRelay) -> None:
    relay = await start_relay()
    ws_port = relay.opts.ws_port
    a = await ws_relay_client(ws_port, "uuid-ww", src="127.0.0.2")
    await a.send(b"sent before the partner came")
    b = await ws_relay_client(ws_port, "uuid-ww", src="127.0.0.3")
    assert await asyncio.wait_for(b.recv(), 20) == b"sent before the partner came"
    for i in range(100):
        await b.send(i.to_bytes(2, "little") * 1000)
    await b.send("text")
    await b.send(b"")
    await b.send(b"end")
    for i in range(100):
        assert await asyncio.wait_for(a.recv(), 20) == i.to_bytes(2, "little") * 1000
    assert await asyncio.wait_for(a.recv(), 20) == b"end"
    await a.close()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(b.recv(), 20)
    await asyncio.sleep(0.1)
    assert not relay.sessions


async def test_ws_key_mismatch_and_timeout(start_relay: StartRelay) -> None:
    relay = await start_relay(licence_key="k", pair_wait_timeout=1.0)
    ws_port = relay.opts.ws_port
    bad = await ws_relay_client(ws_port, "uuid-wk", licence_key="nope", src="127.0.0.2")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(bad.recv(), 20)
    alone = await ws_relay_client(ws_port, "uuid-wk", licence_key="k", src="127.0.0.3")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(alone.recv(), 20)  # closed after the wait timeout
    assert len(relay.pairing) == 0 and not relay.sessions


async def test_ws_waiter_that_leaves_is_forgotten(start_relay: StartRelay) -> None:
    relay = await start_relay()
    ws = await ws_relay_client(relay.opts.ws_port, "uuid-gone", src="127.0.0.2")
    await asyncio.sleep(0.2)
    assert len(relay.pairing) == 1
    await ws.close()
    for _ in range(100):
        if len(relay.pairing) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(relay.pairing) == 0


async def test_forwarded_address_from_trusted_proxy_only(start_relay: StartRelay) -> None:
    relay = await start_relay()
    ws_port = relay.opts.ws_port
    # 127.0.0.2 is a trusted proxy (loopback by default): its X-Real-IP is believed.
    a = await ws_relay_client(
        ws_port, "uuid-fw", src="127.0.0.2", headers={"X-Real-IP": "198.51.100.7"}
    )
    b = await ws_relay_client(
        ws_port, "uuid-fw", src="127.0.0.3", headers={"X-Forwarded-For": "203.0.113.5, 127.0.0.9"}
    )
    await a.send(b"x")
    assert await asyncio.wait_for(b.recv(), 20) == b"x"
    (session,) = relay.sessions
    assert session.first.addr[0] == "198.51.100.7"
    assert session.second.addr[0] == "203.0.113.5"
    await a.close()
    await b.close()


async def test_forwarded_header_ignored_from_untrusted_peer(start_relay: StartRelay) -> None:
    relay = await start_relay(trusted_proxies=())
    ws_port = relay.opts.ws_port
    a = await ws_relay_client(
        ws_port, "uuid-nf", src="127.0.0.2", headers={"X-Real-IP": "198.51.100.7"}
    )
    b = await ws_relay_client(ws_port, "uuid-nf", src="127.0.0.3")
    await a.send(b"x")
    assert await asyncio.wait_for(b.recv(), 20) == b"x"
    (session,) = relay.sessions
    assert session.first.addr[0] == "127.0.0.2"
    await a.close()
    await b.close()


async def test_ws_bad_first_message(start_relay: StartRelay) -> None:
    relay = await start_relay()
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{relay.opts.ws_port}/", compression=None) as ws:
        await ws.send("text first")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)
    async with connect(f"ws://127.0.0.1:{relay.opts.ws_port}/", compression=None) as ws:
        await ws.send(b"\x00" * 70_000)  # over the 64 KiB first-message limit
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)
    assert len(relay.pairing) == 0


async def test_tcp_side_data_for_ws_after_pairing(start_relay: StartRelay) -> None:
    relay = await start_relay()
    r, w = await tcp_relay_client(relay.opts.port, "uuid-x", "127.0.0.3")
    ws = await ws_relay_client(relay.opts.ws_port, "uuid-x", src="127.0.0.2")
    await ws.send(b"hi")
    assert await read_exactly(r, 3) == encode_frame(b"hi")
    await ws.close()
    w.close()


async def test_bridge_back_pressure_bounds_what_the_relay_holds(start_relay: StartRelay) -> None:
    relay = await start_relay()
    r, w = await tcp_relay_client(relay.opts.port, "uuid-bp", "127.0.0.3")
    ws = await ws_relay_client(relay.opts.ws_port, "uuid-bp", src="127.0.0.2")
    await ws.send(b"paired?")
    assert await read_frames(r, 1) == [b"paired?"]
    (session,) = relay.sessions
    ws_end = session.second
    assert isinstance(ws_end, WsClient)
    block = encode_frame(b"m" * 60_000) * 16
    sent = 0
    # The WebSocket client does not read: past the kernel's buffers and the relay's
    # high-water mark, the TCP sender must stall instead of the relay buffering it all.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            while sent < 1 << 30:
                w.write(block)
                sent += 16
                await w.drain()
    assert sent * 60_000 < 64 << 20
    assert ws_end.unsent <= WRITE_HIGH + 512 * 1024  # plus at most one read's worth
    for _ in range(sent):  # everything arrives, in order, once the client reads again
        assert await asyncio.wait_for(ws.recv(), 20) == b"m" * 60_000
    w.write(encode_frame(b"end"))
    assert await asyncio.wait_for(ws.recv(), 20) == b"end"
    await ws.close()
    assert await closed_by_server(r)
    w.close()
