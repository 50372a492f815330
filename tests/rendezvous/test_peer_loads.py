"""The executor reads the peers the core asks for many ids at a time, over a real SQLite
file: one job for the ids asked together, none lost, failures reported per id."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyhbb.rendezvous.actions import LoadPeer, SendUdp
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.http_proxy import HttpProxy
from pyhbb.rendezvous.adapters.udp import UdpEndpoint
from pyhbb.store.base import StoreError
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.rendezvous.helpers import NO_REQUEST_PK, REQUEST_PK, make_core, register_peer
from tests.support.rdclient import UdpPeer

pytestmark = pytest.mark.timeout(60)

PEERS = 1500
PK = bytes(range(32))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlitePeerStore]:
    async with await SqliteDatabase.open(str(tmp_path / "db_v2.sqlite3")) as db:
        store = SqlitePeerStore(db)
        for i in range(PEERS):
            await store.insert(i.to_bytes(16, "big"), f"peer{i:05d}", b"u", PK, "127.0.0.2")
        yield store
        await store.close()


async def test_ids_asked_together_are_read_in_few_jobs_and_all_answered(
    store: SqlitePeerStore,
) -> None:
    core = make_core(take_back_reads_per_second=1e6)  # one source: above its fair share
    loop = asyncio.get_running_loop()
    executor = Executor(core, store, loop.time, HttpProxy("http://127.0.0.1:9", 1024).handle)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpEndpoint(core, executor), local_addr=("127.0.0.1", 0)
    )
    client = await UdpPeer.open(transport.get_extra_info("sockname"), "127.0.0.2")
    # the answers come in a burst once read: room for all of them
    client.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20
    )
    try:
        # a restart: every peer's heartbeat arrives, none in memory; plus 100 unknown ids
        ids = [f"peer{i:05d}" for i in range(PEERS)] + [f"unknown{i:03d}" for i in range(100)]
        for peer_id in ids:
            executor.run(core.on_udp(register_peer(peer_id), client.addr, loop.time()))
        assert executor.loads.loads == len(ids)
        answers = [await asyncio.wait_for(client.proto.queue.get(), 10) for _ in ids]
        assert sorted(data for data, _ in answers) == sorted(
            [NO_REQUEST_PK] * PEERS + [REQUEST_PK] * 100
        )
        # 1,600 ids asked in one go: two jobs of at most MAX_BATCH ids, not one per id
        assert executor.loads.jobs == 2
        assert all(core.state.peers.online(f"peer{i:05d}", loop.time()) for i in range(PEERS))
        await executor.drain()
    finally:
        client.close()
        transport.close()


async def test_a_failed_read_answers_every_waiter(store: SqlitePeerStore) -> None:
    core = make_core()
    loop = asyncio.get_running_loop()
    executor = Executor(core, store, loop.time, HttpProxy("http://127.0.0.1:9", 1024).handle)
    sent: list[SendUdp] = []
    executor._send_udp = lambda payload, addr: sent.append(SendUdp(payload, addr))

    async def down(*args: object) -> None:
        raise StoreError("disk I/O error (simulated)")

    store.get_many = down  # type: ignore[method-assign]
    src = ("127.0.0.2", 4000)
    actions = [a for i in range(10) for a in core.on_udp(register_peer(f"peer{i:05d}"), src, 1.0)]
    assert all(isinstance(a, LoadPeer) for a in actions)
    executor.run(actions)
    await executor.drain()
    assert sent == [SendUdp(REQUEST_PK, src)] * 10  # as before take-back: re-register
    assert core.state.pending_loads == 0
