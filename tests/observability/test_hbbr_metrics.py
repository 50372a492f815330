"""hbbr's /metrics and /healthz after real relay sessions over TCP and WebSocket."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.relay.server import RelayServer
from pyhbb.wire.framing import encode_frame
from tests.observability.free import free_port
from tests.observability.scrape import Scrape, check_conventions, health, scrape
from tests.relay.clients import read_exactly, tcp_connect, tcp_relay_client, ws_relay_client
from tests.support.ports import free_base_port

KEY = "metrics-key"
FAST = {"total_bandwidth": 1e6, "single_bandwidth": 1e6, "limit_speed": 1e6}


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RelayServer]:
    opts = dataclasses.replace(
        HbbrOptions(),
        port=free_base_port((0, 2)),
        workdir=tmp_path,
        metrics=("127.0.0.1", free_port()),
        **FAST,
    )
    server = RelayServer(opts, KEY)
    await server.start()
    yield server
    await asyncio.wait_for(server.close(), 20)


async def until(relay: RelayServer, ok: object, timeout: float = 10.0) -> Scrape:
    assert relay.opts.metrics is not None
    deadline = time.monotonic() + timeout
    while True:
        got = await scrape(relay.opts.metrics)
        if callable(ok) and ok(got):
            return got
        assert time.monotonic() < deadline, got.samples
        await asyncio.sleep(0.1)


async def test_sessions_bytes_and_refusals_are_counted(relay: RelayServer) -> None:
    assert relay.opts.metrics is not None
    where = relay.opts.metrics
    port, ws_port = relay.opts.port, relay.opts.ws_port
    before = await scrape(where)
    # a TCP pair, spliced
    ra, wa = await tcp_relay_client(port, "m-1", "127.0.0.2", KEY)
    rb, wb = await tcp_relay_client(port, "m-1", "127.0.0.3", KEY)
    payload = b"x" * 100_000
    wa.write(payload)
    assert await read_exactly(rb, len(payload)) == payload
    # a WebSocket waits, a TCP client pairs with it: bridged
    ws = await ws_relay_client(ws_port, "m-2", KEY, src="127.0.0.4")
    await asyncio.sleep(0.2)
    rc, wc = await tcp_relay_client(port, "m-2", "127.0.0.5", KEY)
    await ws.send(b"hello bridge")
    assert await read_exactly(rc, len(encode_frame(b"hello bridge"))) == encode_frame(
        b"hello bridge"
    )
    # refused: a wrong key; dropped: a first frame that is not RequestRelay
    _, wrong = await tcp_relay_client(port, "m-3", "127.0.0.6", "another key")
    rbad, wbad = await tcp_connect(port, "127.0.0.7")
    wbad.write(encode_frame(b"\xff\xffnot protobuf"))

    def settled(s: Scrape) -> bool:
        return (
            s.delta(before, "pyhbb_hbbr_refusals_total", reason="licence_key") == 1
            and s.delta(before, "pyhbb_hbbr_errors_total", kind="bad_first_message") == 1
        )

    during = await until(relay, settled)
    check_conventions(during, {"m-1", "m-2", KEY})
    assert during.delta(before, "pyhbb_hbbr_connections_total", transport="tcp") == 5
    assert during.delta(before, "pyhbb_hbbr_connections_total", transport="ws") == 1
    assert during.delta(before, "pyhbb_hbbr_sessions_total", transport="tcp-tcp") == 1
    assert during.delta(before, "pyhbb_hbbr_sessions_total", transport="ws-tcp") == 1
    assert during.get("pyhbb_hbbr_sessions_active", transport="tcp-tcp") == 1
    assert during.get("pyhbb_hbbr_sessions_active", transport="ws-tcp") == 1
    assert during.get("pyhbb_hbbr_table_entries", table="sessions") == 2
    assert during.get("pyhbb_hbbr_relayed_bytes_total", transport="tcp-tcp") >= len(payload)
    assert during.get("pyhbb_hbbr_bandwidth_limit_bits_per_second", scope="total") == 1e6 * 2**20
    assert during.get("pyhbb_info", service="hbbr", version="0.1.0") == 1

    # the spliced pair ends: counted as ended, its bytes stay counted
    for w in (wa, wb):
        w.close()
    after = await until(
        relay, lambda s: s.get("pyhbb_hbbr_sessions_active", transport="tcp-tcp") == 0
    )
    assert after.delta(before, "pyhbb_hbbr_sessions_ended_total", reason="closed") == 1
    assert after.get("pyhbb_hbbr_relayed_bytes_total", transport="tcp-tcp") >= len(payload)

    status, body = await health(where)
    assert status == 200, body
    assert set(body["checks"]) == {"loop", "tcp"} and body["status"] == "ok"
    for w in (wc, wrong, wbad):
        w.close()
    await ws.close()
    del ra, rc, rbad
