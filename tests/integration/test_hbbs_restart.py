"""A restart without an outage (issue 11): peers registered before hbbs restarted are
online again with their first heartbeat, read back from the database, without the
RegisterPk round trip; over real UDP sockets and a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyhbb.store.base import StoreError
from pyhbb.wire import rendezvous_pb2 as pb
from tests.support.hbbs_server import running_hbbs
from tests.support.rdclient import UdpPeer

pytestmark = pytest.mark.timeout(120)

PEERS = 40


async def test_returning_peers_are_online_after_a_restart(tmp_path: Path) -> None:
    # each peer on its own address, as real clients are
    peers = [await UdpPeer.open(("127.0.0.1", 9), f"127.0.1.{i + 1}") for i in range(PEERS)]
    ids = [f"peer{i:04d}" for i in range(PEERS)]
    try:
        async with running_hbbs(tmp_path) as hbbs:
            for peer, peer_id in zip(peers, ids, strict=True):
                peer.server = hbbs.udp
                uuid, pk = peer_id.encode(), peer_id.encode().ljust(32, b"k")
                assert await peer.register_pk(peer_id, uuid, pk) == pb.RegisterPkResponse.OK
                assert await peer.register_peer(peer_id) is False
        async with running_hbbs(tmp_path) as hbbs:  # same keys and database, empty memory
            for peer in peers:
                peer.server = hbbs.udp
            for peer, peer_id in zip(peers, ids, strict=True):  # all at once, as after a restart
                peer.send(pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=peer_id)))
            for peer in peers:
                answer = await peer.recv()
                assert answer.WhichOneof("union") == "register_peer_response"
                assert answer.register_peer_response.request_pk is False
                assert await peer.nothing(0.05)  # nothing else: no RegisterPk was needed
            core = hbbs.server.core
            now = asyncio.get_running_loop().time()
            assert all(core.state.peers.online(peer_id, now) for peer_id in ids)
            assert core.state.stats["heartbeat_taken_back"] == PEERS
            loads = hbbs.server.executor.loads
            assert loads.loads == PEERS and loads.jobs < PEERS  # read in batches
    finally:
        for peer in peers:
            peer.close()


async def test_database_down_after_a_restart_answers_request_pk(tmp_path: Path) -> None:
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
