"""A restart without an outage (issue 11): peers registered before hbbs restarted are
online again with their first heartbeat, read back from the database, without the
RegisterPk round trip; over real UDP sockets and a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyhbb.rendezvous import app, registration
from pyhbb.rendezvous.stored_peer import CompactPage
from pyhbb.store.base import StoreError
from pyhbb.store.peers import SqlitePeerStore
from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import UdpPeer

pytestmark = pytest.mark.timeout(120)

PEERS = 40


async def register_then_restart_peers(tmp_path: Path) -> tuple[list[UdpPeer], list[str]]:
    """PEERS peers, each on its own address as real clients are, registered with an hbbs
    that is then stopped."""
    peers = [await UdpPeer.open(("127.0.0.1", 9), f"127.0.1.{i + 1}") for i in range(PEERS)]
    ids = [f"peer{i:04d}" for i in range(PEERS)]
    async with running_hbbs(tmp_path) as hbbs:
        for peer, peer_id in zip(peers, ids, strict=True):
            peer.server = hbbs.udp
            uuid, pk = peer_id.encode(), peer_id.encode().ljust(32, b"k")
            assert await peer.register_pk(peer_id, uuid, pk) == pb.RegisterPkResponse.OK
            assert await peer.register_peer(peer_id) is False
    return peers, ids


async def all_answered_without_request_pk(peers: list[UdpPeer], ids: list[str]) -> None:
    for peer, peer_id in zip(peers, ids, strict=True):  # all at once, as after a restart
        peer.send(pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=peer_id)))
    for peer in peers:
        answer = await peer.recv()
        assert answer.WhichOneof("union") == "register_peer_response"
        assert answer.register_peer_response.request_pk is False
        assert await peer.nothing(0.05)  # nothing else: no RegisterPk was needed


async def test_returning_peers_are_taken_back_by_their_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "PRELOAD_SHARE", 0.0)  # no warm start: every peer is read
    peers, ids = await register_then_restart_peers(tmp_path)
    try:
        async with running_hbbs(tmp_path) as hbbs:  # same keys and database, empty memory
            for peer in peers:
                peer.server = hbbs.udp
            await all_answered_without_request_pk(peers, ids)
            core = hbbs.server.core
            now = asyncio.get_running_loop().time()
            assert all(core.state.peers.online(peer_id, now) for peer_id in ids)
            assert core.state.stats["heartbeat_taken_back"] == PEERS
            loads = hbbs.server.executor.loads
            assert loads.loads == PEERS and loads.jobs < PEERS  # read in batches
    finally:
        for peer in peers:
            peer.close()


async def test_the_warm_start_reads_the_table_before_the_heartbeats(tmp_path: Path) -> None:
    peers, ids = await register_then_restart_peers(tmp_path)
    try:
        async with running_hbbs(tmp_path) as hbbs:
            for peer in peers:
                peer.server = hbbs.udp
            core = hbbs.server.core
            async with asyncio.timeout(10):
                while len(core.state.peers) < PEERS:
                    await asyncio.sleep(0.01)
            now = asyncio.get_running_loop().time()
            assert not any(core.state.peers.online(peer_id, now) for peer_id in ids)
            await all_answered_without_request_pk(peers, ids)
            now = asyncio.get_running_loop().time()
            assert all(core.state.peers.online(peer_id, now) for peer_id in ids)
            assert hbbs.server.executor.loads.loads == 0  # no read per heartbeat
            assert core.state.stats["heartbeat_taken_back"] == 0
    finally:
        for peer in peers:
            peer.close()


async def test_database_down_after_a_restart_answers_request_pk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "PRELOAD_SHARE", 0.0)
    peer = await UdpPeer.open(("127.0.0.1", 9), "127.0.0.2")
    try:
        async with running_hbbs(tmp_path) as hbbs:
            peer.server = hbbs.udp
            assert await peer.register_pk("123456789", b"u", b"k" * 32) == 0
        async with running_hbbs(tmp_path) as hbbs:
            peer.server = hbbs.udp
            store = hbbs.server.executor.store
            real_get_many = store.get_many

            async def down(*args: object) -> None:
                raise StoreError("disk I/O error (simulated)")

            store.get_many = down  # type: ignore[method-assign]
            assert await peer.register_peer("123456789") is True  # as before take-back
            store.get_many = real_get_many  # type: ignore[method-assign]
            assert await peer.register_peer("123456789") is False  # read again, and back
    finally:
        peer.close()


async def test_heartbeats_with_no_read_to_spare_wait_for_the_warm_starts_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers, ids = await register_then_restart_peers(tmp_path)
    # as in the restart storm, when every take-back read hbbs allows is in flight
    monkeypatch.setattr(registration, "MAX_TAKE_BACK_LOADS", 0)
    gate = asyncio.Event()
    real_scan = SqlitePeerStore.scan_compact

    async def held_scan(self: SqlitePeerStore, after: bytes, limit: int) -> CompactPage:
        await gate.wait()  # the warm start's first page comes after the heartbeats
        return await real_scan(self, after, limit)

    monkeypatch.setattr(SqlitePeerStore, "scan_compact", held_scan)
    try:
        async with running_hbbs(tmp_path) as hbbs:
            for peer, peer_id in zip(peers, ids, strict=True):
                peer.server = hbbs.udp
                peer.send(pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=peer_id)))
            core = hbbs.server.core
            async with asyncio.timeout(10):
                while core.state.stats["heartbeat_warm_waits"] < PEERS:
                    await asyncio.sleep(0.01)
            assert await peers[0].nothing(0.1)  # waiting: not answered (before: never)
            gate.set()
            for peer in peers:
                answer = await peer.recv()
                assert answer.register_peer_response.request_pk is False
            now = asyncio.get_running_loop().time()
            assert all(core.state.peers.online(peer_id, now) for peer_id in ids)
            assert hbbs.server.executor.loads.loads == 0  # no read of their own
            assert core.state.stats["heartbeat_warm_answered"] == PEERS
            assert core.state.stats["heartbeat_taken_back"] == 0
    finally:
        for peer in peers:
            peer.close()
