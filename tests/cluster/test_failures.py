"""Failures (issue 10 item 5, docs/cluster.md §1.5), each on its own cluster:
kill -9 of a node, of one NATS server, of two (quorum lost), and a lost evict."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from tests.cluster.harness import Cluster, node_proc, start_node
from tests.cluster.peers import connected_peer
from tests.cluster.test_flows import directory_entry
from tests.support.rdclient import Msg, TcpClient, UdpPeer, pb

R = pb.RegisterPkResponse
PEERS_ON_DEAD_NODE = 300


async def punch(cluster: Cluster, node: int, peer_id: str, ip: str) -> TcpClient:
    a = await TcpClient.connect(cluster.node_addr(node), ip)
    a.send(Msg(punch_hole_request=pb.PunchHoleRequest(id=peer_id, licence_key=cluster.public_key)))
    return a


async def test_a_killed_node_peers_get_offline_at_once_then_move(own_cluster: Cluster) -> None:
    c = own_cluster
    peers: list[tuple[str, UdpPeer]] = []
    for i in range(PEERS_ON_DEAD_NODE):
        peer = await connected_peer(c.node_addr(0), f"127.0.2.{1 + i % 250}")
        assert await peer.register_pk(f"dead{i:06d}", f"u{i}".encode(), bytes(32)) == R.OK
        peers.append((f"dead{i:06d}", peer))
    c.nodes[0].kill9()
    started = time.monotonic()
    a = await punch(c, 1, "dead000000", "127.0.3.1")
    resp = (await a.recv_nonkeyexchange()).punch_hole_response
    offline_after = time.monotonic() - started
    a.close()
    assert resp.failure == pb.PunchHoleResponse.OFFLINE
    assert offline_after < 1.0  # no responders: not a 1 s request timeout
    # DNS now points the peers at n2: each re-registers there (same uuid) and is served.
    moved = []
    for peer_id, old in peers:
        old.close()
        new = await connected_peer(c.node_addr(1), "127.0.4.1")
        assert (
            await new.register_pk(peer_id, f"u{peer_id[4:].lstrip('0') or 0}".encode(), bytes(32))
            == R.OK
        )
        moved.append((peer_id, new))
    for peer_id, _ in moved[::30]:
        assert await directory_entry(c, peer_id) == (
            "n2",
            f"u{peer_id[4:].lstrip('0') or 0}".encode(),
        )
    peer_id, new = moved[7]
    a = await punch(c, 2, peer_id, "127.0.3.2")
    assert (await new.recv_kind("punch_hole")).punch_hole
    a.close()
    # n1 comes back under its name (its old subscriptions are gone), and forwards to n2
    c.nodes[0] = node_proc(c, 0, [])
    start_node(c, c.nodes[0], 0)
    a = await punch(c, 0, peer_id, "127.0.3.3")
    assert (await new.recv_kind("punch_hole", timeout=5)).punch_hole
    a.close()
    for _, new in moved:
        new.close()
    # a second process under a live node's name is refused before it listens
    twin = node_proc(c, 1, [])
    twin.log = c.root / "twin.log"
    twin.start()
    assert twin.popen is not None and twin.popen.wait(30) == 2
    assert "NODE_NAME=n2 is in use by another live node" in twin.log.read_text()


async def test_one_nats_server_killed_the_cluster_keeps_working(own_cluster: Cluster) -> None:
    c = own_cluster
    b = await connected_peer(c.node_addr(0), "127.0.0.71")
    assert await b.register_pk("survive001", b"u-s", bytes(32)) == R.OK
    c.nats[0].kill9()
    deadline = time.monotonic() + 20
    result = None
    # clients re-send RegisterPk every few seconds; the nodes fail over meanwhile
    while time.monotonic() < deadline and result != R.OK:
        other = await connected_peer(c.node_addr(1), "127.0.0.72")
        result = await other.register_pk("survive002", b"u-s2", bytes(32))
        other.close()
        if result != R.OK:
            await asyncio.sleep(1)
    assert result == R.OK
    a = await punch(c, 2, "survive001", "127.0.0.73")
    assert (await b.recv_kind("punch_hole", timeout=5)).punch_hole  # n3 → n1 → B
    a.close()
    b.close()


async def test_quorum_lost_held_peers_work_claims_fail_then_all_recovers(
    own_cluster: Cluster,
) -> None:
    c = own_cluster
    b = await connected_peer(c.node_addr(0), "127.0.0.81")
    assert await b.register_pk("quorum0001", b"u-q", bytes(32)) == R.OK
    c.nats[1].kill9()
    c.nats[2].kill9()
    await asyncio.sleep(1)
    assert not await b.register_peer("quorum0001")  # held peers keep working
    a = await punch(c, 0, "quorum0001", "127.0.0.82")  # same node: memory only
    assert (await b.recv_kind("punch_hole")).punch_hole
    a.close()
    newcomer = await connected_peer(c.node_addr(0), "127.0.0.83")
    assert (
        await newcomer.register_pk(
            "quorum0002",
            b"u-q2",
            bytes(32),
        )
        == R.SERVER_ERROR
    )
    for proc in c.nats[1:]:
        proc.start()
    deadline = time.monotonic() + 45
    result = R.SERVER_ERROR
    while time.monotonic() < deadline and result != R.OK:
        await asyncio.sleep(1)
        result = await newcomer.register_pk("quorum0002", b"u-q2", bytes(32))
    assert result == R.OK  # recovered by itself
    newcomer.close()
    b.close()


async def test_a_lost_evict_never_leaves_two_holders(own_cluster: Cluster) -> None:
    """n1 is frozen (SIGSTOP) while its peer moves to n2: the evict cannot reach it and
    NATS drops its connection. Once n1 runs again it reconnects, doubts what it holds,
    and the peer's next heartbeat there is checked against the directory."""
    c = own_cluster
    uuid, pk = b"u-lost", os.urandom(32)
    old = await connected_peer(c.node_addr(0), "127.0.0.91")
    assert await old.register_pk("lostevict1", uuid, pk) == R.OK
    c.nodes[0].signal(signal.SIGSTOP)
    try:
        new = await connected_peer(c.node_addr(1), "127.0.0.91")
        assert await new.register_pk("lostevict1", uuid, pk) == R.OK
        await asyncio.sleep(8)  # > ping_interval * ping_max: the server drops n1
    finally:
        c.nodes[0].signal(signal.SIGCONT)
    deadline = time.monotonic() + 20
    while "reconnected to NATS" not in c.log_of(0) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert "reconnected to NATS" in c.log_of(0)
    assert await old.register_peer("lostevict1")  # n1 no longer claims it: send your key
    assert await directory_entry(c, "lostevict1") == ("n2", uuid)
    a = await punch(c, 0, "lostevict1", "127.0.0.92")
    assert (await new.recv_kind("punch_hole")).punch_hole  # via its one holder, n2
    a.close()
    old.close()
    new.close()
