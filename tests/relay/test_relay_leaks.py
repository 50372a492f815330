"""No file descriptor or pipe survives a session, whatever way it ends."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from tests.relay.clients import closed_by_server, read_exactly, tcp_relay_client, ws_relay_client
from tests.relay.conftest import StartRelay

pytestmark = pytest.mark.timeout(240)


def open_fds() -> Counter[str]:
    """Open descriptors of this process by kind (socket, pipe, anon_inode, file)."""
    kinds: Counter[str] = Counter()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, already closed
        kinds[target.split(":", 1)[0] if ":" in target else "file"] += 1
    return kinds


async def settle(baseline: Counter[str]) -> Counter[str]:
    now = open_fds()
    for _ in range(200):
        if now == baseline:
            break
        await asyncio.sleep(0.05)
        now = open_fds()
    return now


async def one_session(port: int, i: int) -> None:
    uuid = f"leak-{i}"
    src1 = f"127.0.{1 + i % 200}.{2 + i % 50}"
    src2 = f"127.1.{1 + i % 200}.{2 + i % 50}"
    r1, w1 = await tcp_relay_client(port, uuid, src1, extra=b"early")
    r2, w2 = await tcp_relay_client(port, uuid, src2)
    assert await read_exactly(r2, 5) == b"early"
    w2.write(b"reply" * 100)
    await w2.drain()
    assert await read_exactly(r1, 500) == b"reply" * 100
    # Vary how sessions end: either side closes, or one side resets.
    if i % 3 == 0:
        w1.close()
        assert await closed_by_server(r2)
        w2.close()
    elif i % 3 == 1:
        w2.close()
        assert await closed_by_server(r1)
        w1.close()
    else:
        w1.transport.abort()
        assert await closed_by_server(r2)
        w2.close()
    await asyncio.gather(w1.wait_closed(), w2.wait_closed(), return_exceptions=True)


async def ws_session(port: int, ws_port: int, i: int) -> None:
    uuid = f"leak-ws-{i}"
    ws = await ws_relay_client(ws_port, uuid, src="127.2.0.2")
    r, w = await tcp_relay_client(port, uuid, "127.2.0.3")
    await ws.send(b"hello")
    await read_exactly(r, 6)
    if i % 2:
        await ws.close()
        assert await closed_by_server(r)
    else:
        w.close()
        await ws.wait_closed()
    w.close()
    await w.wait_closed()


async def failed_handshake(port: int, i: int) -> None:
    r, w = await tcp_relay_client(port, "", f"127.3.0.{2 + i % 100}")  # empty uuid
    assert await closed_by_server(r)
    w.close()
    await w.wait_closed()


async def test_no_fd_or_pipe_leak_after_1000_sessions(start_relay: StartRelay) -> None:
    relay = await start_relay(pair_wait_timeout=1.0)
    port, ws_port = relay.opts.port, relay.opts.ws_port
    # One session of each kind first: the event loop may open a descriptor for good the
    # first time it is used a certain way (uvloop keeps one on /dev/null once it has
    # made a transport), which is not a leak.
    await one_session(port, 1000)
    await ws_session(port, ws_port, 1000)
    await asyncio.sleep(0.1)
    baseline = open_fds()
    limit = asyncio.Semaphore(50)

    async def bounded(coro: object) -> None:
        async with limit:
            await coro  # type: ignore[misc]

    jobs = [bounded(one_session(port, i)) for i in range(1000)]
    jobs += [bounded(ws_session(port, ws_port, i)) for i in range(50)]
    jobs += [bounded(failed_handshake(port, i)) for i in range(50)]
    await asyncio.wait_for(asyncio.gather(*jobs), 180)
    # A few waiters that never get a partner: closed by the wait timeout.
    lonely = [await tcp_relay_client(port, f"lonely-{i}", "127.4.0.2") for i in range(10)]
    for r, w in lonely:
        assert await closed_by_server(r, timeout=15)
        w.close()
        await w.wait_closed()
    after = await settle(baseline)
    assert not relay.sessions and len(relay.pairing) == 0
    assert after == baseline
    assert after["pipe"] == baseline["pipe"]
