"""Logs a client can drive stay short (issue 12 item 5): N refused connections give
O(log N) lines, and no WebSocket connection logs a line of its own from the library."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from tests.relay.clients import closed_by_server, tcp_connect, tcp_relay_client, ws_relay_client
from tests.relay.conftest import StartRelay

pytestmark = pytest.mark.timeout(120)


async def test_refused_connections_are_logged_log_n_times(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(max_handshakes_per_ip=1, licence_key="K")
    port = relay.opts.port
    _held_r, held_w = await tcp_connect(port, "127.0.0.2")  # takes the one slot
    await asyncio.sleep(0.1)
    n = 200
    caplog.set_level(logging.INFO)
    caplog.clear()
    for _ in range(n):
        r, w = await tcp_connect(port, "127.0.0.2")
        assert await closed_by_server(r)
        w.close()
    for i in range(n):  # licence key refusals, from another host
        r, w = await tcp_relay_client(port, f"u{i}", "127.0.0.3", licence_key="wrong")
        assert await closed_by_server(r)
        w.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    most = 2 * (math.floor(math.log2(n)) + 1)  # 1st, 2nd, 4th ... 128th of each kind
    assert 2 <= len(warnings) <= most, warnings
    assert any("MAX_HANDSHAKES_PER_IP" in w for w in warnings)
    assert any("licence key mismatch" in w for w in warnings)
    assert len(caplog.records) <= most + 2, [r.getMessage() for r in caplog.records]
    held_w.close()


async def test_websocket_connections_do_not_log_per_connection(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay()
    caplog.set_level(logging.DEBUG)  # even at debug: nothing per connection from the library
    caplog.clear()
    for i in range(50):
        ws = await ws_relay_client(relay.opts.ws_port, f"quiet-{i}", src="127.0.0.2")
        await ws.close()
    for _ in range(100):
        if len(relay.pairing) == 0:
            break
        await asyncio.sleep(0.05)
    # Only hbbr's own lines (new relay request, gave up waiting) and the test's client.
    others = [
        r for r in caplog.records if not r.name.startswith(("pyhbb.relay", "websockets.client"))
    ]
    assert others == [], [(r.name, r.getMessage()) for r in others]
