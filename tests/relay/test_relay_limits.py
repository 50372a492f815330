"""Blocklist, blacklist, bandwidth caps and the console acting on running sessions.

Timing bounds here are deliberately generous: they check that a cap is applied (a
transfer that would take milliseconds unthrottled takes seconds), never performance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhbb.wire.framing import encode_frame
from tests.relay.clients import (
    closed_by_server,
    read_exactly,
    tcp_connect,
    tcp_relay_client,
    ws_relay_client,
)
from tests.relay.conftest import StartRelay

pytestmark = pytest.mark.timeout(90)


async def console(port: int, line: str, src: str = "127.0.0.1") -> str:
    reader, writer = await tcp_connect(port, src)
    writer.write(line.encode())
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return out.decode()


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``check`` (the once-a-second tick applies console changes) until true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def timed_transfer(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, size: int
) -> float:
    start = time.monotonic()
    writer.write(b"z" * size)
    await asyncio.wait_for(asyncio.gather(writer.drain(), read_exactly(reader, size, 60)), 60)
    return time.monotonic() - start


async def test_blocklist_file_refuses_at_accept(start_relay: StartRelay, tmp_path: Path) -> None:
    (tmp_path / "blocklist.txt").write_text("127.0.0.7\n::ffff:127.0.0.8 mapped form\n")
    relay = await start_relay()
    for src in ("127.0.0.7", "127.0.0.8"):
        r, w = await tcp_relay_client(relay.opts.port, f"uuid-{src}", src)
        assert await closed_by_server(r)
        w.close()
    ws_closed = False
    try:
        ws = await ws_relay_client(relay.opts.ws_port, "uuid-ws", src="127.0.0.7")
        await asyncio.wait_for(ws.recv(), 20)
    except Exception:
        ws_closed = True
    assert ws_closed
    assert len(relay.pairing) == 0
    r, w = await tcp_relay_client(relay.opts.port, "uuid-ok", "127.0.0.9")
    await asyncio.sleep(0.2)
    assert len(relay.pairing) == 1  # others are unaffected
    w.close()


@pytest.mark.parametrize("blocked", ["first", "second"])
async def test_blocklist_cuts_a_running_session(start_relay: StartRelay, blocked: str) -> None:
    relay = await start_relay()
    port = relay.opts.port
    r1, w1 = await tcp_relay_client(port, "uuid-cut", "127.0.0.2")
    r2, w2 = await tcp_relay_client(port, "uuid-cut", "127.0.0.3")
    w1.write(b"before")
    await w1.drain()
    assert await read_exactly(r2, 6) == b"before"
    ip = "127.0.0.2" if blocked == "first" else "127.0.0.3"
    assert await console(port, f"Ba {ip}") == ""
    assert await console(port, f"B {ip}") == "true\n"
    # Cut within about a second even though the session keeps being used.
    assert await closed_by_server(r1, timeout=10)
    assert await closed_by_server(r2, timeout=10)
    assert not relay.sessions
    w1.close()
    w2.close()


async def test_blocklist_cuts_a_waiting_connection(start_relay: StartRelay) -> None:
    relay = await start_relay()
    r, w = await tcp_relay_client(relay.opts.port, "uuid-wait", "127.0.0.4")
    await asyncio.sleep(0.2)
    relay.blocklist.add(["127.0.0.4"])
    assert await closed_by_server(r, timeout=10)
    assert len(relay.pairing) == 0
    w.close()


async def test_blocklist_cuts_a_ws_session(start_relay: StartRelay) -> None:
    relay = await start_relay()
    a = await ws_relay_client(relay.opts.ws_port, "uuid-wsc", src="127.0.0.2")
    r, w = await tcp_relay_client(relay.opts.port, "uuid-wsc", "127.0.0.3")
    await a.send(b"x")
    await read_exactly(r, 2)
    relay.blocklist.add(["127.0.0.2"])
    assert await closed_by_server(r, timeout=10)
    w.close()


async def test_single_bandwidth_cap(start_relay: StartRelay) -> None:
    # 2 Mb/s = 256 KiB/s; 1 MiB needs about 4 s. Unthrottled it takes milliseconds.
    relay = await start_relay(single_bandwidth=2.0)
    _r1, w1 = await tcp_relay_client(relay.opts.port, "uuid-cap", "127.0.0.2")
    r2, w2 = await tcp_relay_client(relay.opts.port, "uuid-cap", "127.0.0.3")
    elapsed = await timed_transfer(w1, r2, 1 << 20)
    assert 2.0 <= elapsed < 40
    w1.close()
    w2.close()


async def test_single_bandwidth_cap_on_a_websocket_bridge(start_relay: StartRelay) -> None:
    # 2 Mb/s = 256 KiB/s: 1 MiB of frames to the WebSocket side needs about 4 s.
    relay = await start_relay(single_bandwidth=2.0)
    r, w = await tcp_relay_client(relay.opts.port, "uuid-wscap", "127.0.0.3")
    ws = await ws_relay_client(relay.opts.ws_port, "uuid-wscap", src="127.0.0.2")
    await ws.send(b"go")
    await read_exactly(r, 3)
    start = time.monotonic()
    for _ in range(16):
        w.write(encode_frame(b"c" * 65_536))
    for _ in range(16):
        assert await asyncio.wait_for(ws.recv(), 60) == b"c" * 65_536
    assert 2.0 <= time.monotonic() - start < 40
    await ws.close()
    w.close()


async def test_cap_is_shared_by_both_directions(start_relay: StartRelay) -> None:
    relay = await start_relay(single_bandwidth=4.0)  # 512 KiB/s for the pair
    r1, w1 = await tcp_relay_client(relay.opts.port, "uuid-both", "127.0.0.2")
    r2, w2 = await tcp_relay_client(relay.opts.port, "uuid-both", "127.0.0.3")
    start = time.monotonic()
    await asyncio.gather(timed_transfer(w1, r2, 1 << 20), timed_transfer(w2, r1, 1 << 20))
    # 2 MiB in all at 512 KiB/s: about 4 s (one direction alone would need 2 s).
    assert 2.5 <= time.monotonic() - start < 40
    w1.close()
    w2.close()


async def test_console_total_bandwidth_slows_a_running_session(start_relay: StartRelay) -> None:
    relay = await start_relay()
    port = relay.opts.port
    _r1, w1 = await tcp_relay_client(port, "uuid-tb", "127.0.0.2")
    r2, w2 = await tcp_relay_client(port, "uuid-tb", "127.0.0.3")
    assert await timed_transfer(w1, r2, 4 << 20) < 30  # unthrottled: fast
    assert await console(port, "tb 2") == ""
    assert await console(port, "tb") == "2Mb/s\n"
    elapsed = await timed_transfer(w1, r2, 1 << 20)  # 256 KiB/s now: about 4 s
    assert 2.0 <= elapsed < 40
    w1.close()
    w2.close()


async def test_console_blacklist_limits_a_running_session(start_relay: StartRelay) -> None:
    relay = await start_relay(limit_speed=2.0)
    port = relay.opts.port
    r1, w1 = await tcp_relay_client(port, "uuid-bl", "127.0.0.2")
    _r2, w2 = await tcp_relay_client(port, "uuid-bl", "127.0.0.3")
    assert await timed_transfer(w2, r1, 4 << 20) < 30
    assert await console(port, "ba 127.0.0.2") == ""
    (session,) = relay.sessions
    assert await eventually(lambda: session.budget.blacklisted)  # at the next tick
    elapsed = await timed_transfer(w2, r1, 1 << 20)
    assert 2.0 <= elapsed < 40
    assert await console(port, "br all") == ""
    assert await eventually(lambda: not session.budget.blacklisted)
    w1.close()
    w2.close()


async def test_console_usage_lists_sessions(start_relay: StartRelay) -> None:
    relay = await start_relay()
    port = relay.opts.port
    _r1, w1 = await tcp_relay_client(port, "uuid-u", "127.0.0.2")
    r2, w2 = await tcp_relay_client(port, "uuid-u", "127.0.0.3")
    await timed_transfer(w1, r2, 2 << 20)
    (session,) = relay.sessions
    assert await eventually(lambda: session.budget.elapsed_ms >= 1000)
    assert await eventually(lambda: session.budget.total_bits == 8 * (2 << 20))
    lines = (await console(port, "usage")).splitlines()
    assert len(lines) == 1
    key, figures = lines[0].split(": ", 1)
    assert key.startswith("127.0.0.3:")
    elapsed, total, highest, average, current = figures.split(" ")
    assert elapsed.endswith("s") and int(elapsed[:-1]) >= 1
    assert total == "2.00MB"
    for rate in (highest, average, current):
        assert rate.endswith("kb/s") and int(rate[:-4]) >= 0
    w1.close()
    w2.close()


async def test_console_on_loopback_and_relay_on_loopback(start_relay: StartRelay) -> None:
    relay = await start_relay()
    port = relay.opts.port
    help_text = await console(port, "h")
    assert help_text.startswith("blacklist-add(ba) <ip>\n") and help_text.endswith("usage(u)\n")
    assert await console(port, "h\n", src="::1") == help_text
    assert await console(port, "sb") == "1000000Mb/s\n"
    assert await console(port, "dt") == "0.66\n"
    assert await console(port, "t 60") == ""
    assert await console(port, "t") == "60s\n"
    # Same loopback address, RequestRelay frames: served as relay clients.
    _r1, w1 = await tcp_relay_client(port, "uuid-lo", "127.0.0.1")
    r2, w2 = await tcp_relay_client(port, "uuid-lo", "127.0.0.1")
    w1.write(b"local relay works")
    await w1.drain()
    assert await read_exactly(r2, 17) == b"local relay works"
    w1.close()
    w2.close()


async def test_console_command_sent_in_pieces(start_relay: StartRelay) -> None:
    relay = await start_relay()
    reader, writer = await tcp_connect(relay.opts.port, "127.0.0.1")
    writer.write(b"b")  # one printable byte: could be a frame header, so wait a little
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 20)
    assert out == b""  # empty blacklist, printed after the 1 s console read timeout
    writer.close()
