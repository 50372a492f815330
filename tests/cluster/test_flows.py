"""Flows across three nodes with unchanged clients (issue 10 item 4, docs/cluster.md §1.4):
A on one node, B registered with another, B's answers arriving at a third."""

from __future__ import annotations

import asyncio
import os
import socket

import nats

from pyhbb.cluster.messages import PEERS_BUCKET, decode_entry, peer_key
from pyhbb.wire import addr_mangle
from tests.cluster.harness import Cluster
from tests.cluster.peers import connected_peer
from tests.support.rdclient import Msg, TcpClient, UdpPeer, WsClient, parse, pb

R = pb.RegisterPkResponse
OK = R.OK


async def registered(cluster: Cluster, node: int, peer_id: str, ip: str, uuid: bytes) -> UdpPeer:
    peer = await connected_peer(cluster.node_addr(node), ip)
    assert await peer.register_pk(peer_id, uuid, os.urandom(32)) == OK
    assert not await peer.register_peer(peer_id)  # the heartbeat is accepted by its holder
    return peer


async def directory_entry(cluster: Cluster, peer_id: str) -> tuple[str, bytes] | None:
    nc = await nats.connect(servers=cluster.urls)
    try:
        kv = await nc.jetstream().key_value(PEERS_BUCKET)
        try:
            entry = decode_entry((await kv.get(peer_key(peer_id))).value or b"")
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.owner, entry.uuid
    finally:
        await nc.close()


async def test_a_datagram_from_another_node_never_reaches_a_peer(cluster: Cluster) -> None:
    """The simulated NAT works: only the node a peer registered with can reach it."""
    b = await registered(cluster, 0, "natcheck01", "127.0.0.41", b"u-nat")
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.12", 0))
    try:
        other.sendto(b"\x00", b.addr)
        assert await b.nothing(0.3)
    finally:
        other.close()
        b.close()


async def test_heartbeats_never_reach_the_engine(cluster: Cluster) -> None:
    """2,000 accepted heartbeats at the holder cost NATS nothing (docs/cluster.md §1.4):
    the servers' message count grows by the background presence writes only."""
    b = await registered(cluster, 0, "heartbeat1", "127.0.0.57", b"u-hb")
    try:
        before = cluster.nats_messages_in()
        for _ in range(2000):
            b.send(Msg(register_peer=pb.RegisterPeer(id="heartbeat1", serial=3)))
            await b.recv_kind("register_peer_response")
        grown = cluster.nats_messages_in() - before
        # the count does see the cluster's work: one claim is at least one message
        before_claim = cluster.nats_messages_in()
        assert await b.register_pk("heartbeat2", b"u-hb2", os.urandom(32)) == OK
        assert cluster.nats_messages_in() > before_claim
    finally:
        b.close()
    assert grown < 200, grown


async def test_cross_node_punch_and_an_answer_arriving_at_a_third_node(cluster: Cluster) -> None:
    b = await registered(cluster, 0, "crossb0001", "127.0.0.42", b"u-b")
    a = await TcpClient.connect(cluster.node_addr(1), "127.0.0.43")
    try:
        a.send(
            Msg(
                punch_hole_request=pb.PunchHoleRequest(
                    id="crossb0001", licence_key=cluster.public_key, nat_type=pb.SYMMETRIC
                )
            )
        )
        hole = (await b.recv_kind("punch_hole")).punch_hole  # sent by n1: B's NAT let it in
        assert addr_mangle.decode(hole.socket_addr) == a.local
        assert hole.relay_server in cluster.relay_addresses  # one concrete hbbr, never empty
        answer = await TcpClient.connect(cluster.node_addr(2), "127.0.0.42")
        answer.send(
            Msg(
                punch_hole_sent=pb.PunchHoleSent(
                    socket_addr=hole.socket_addr,
                    id="crossb0001",
                    relay_server=hole.relay_server,
                    nat_type=pb.ASYMMETRIC,
                    version="1.4.9",
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert resp.relay_server == hole.relay_server
        assert addr_mangle.decode(resp.socket_addr)[0] == "127.0.0.42"
        assert len(resp.pk) > 64  # signed IdPk: n3 signed with the shared key
        answer.close()
    finally:
        a.close()
        b.close()


async def test_a_websocket_requester_and_a_tcp_registered_target_across_nodes(
    cluster: Cluster,
) -> None:
    """A asks over WebSocket (P+2) at n3; B registered over a TCP session at n1 (the
    client's TCP mode) gets the PunchHole on that session; B answers at n2."""
    b = await TcpClient.connect(cluster.node_addr(0), "127.0.0.66")
    b.send(Msg(register_pk=pb.RegisterPk(id="tcpsess001", uuid=b"u-ts", pk=os.urandom(32))))
    assert (await b.recv_nonkeyexchange()).register_pk_response.result == OK
    host, port = cluster.node_addr(2)
    a = await WsClient.connect((host, port + 2), local="127.0.0.67")
    try:
        await a.send(
            Msg(
                punch_hole_request=pb.PunchHoleRequest(
                    id="tcpsess001", licence_key=cluster.public_key
                )
            )
        )
        while (hole_msg := await b.recv_nonkeyexchange()).WhichOneof("union") != "punch_hole":
            pass
        hole = hole_msg.punch_hole
        assert addr_mangle.decode(hole.socket_addr)[0] == "127.0.0.67"
        answer = await TcpClient.connect(cluster.node_addr(1), "127.0.0.66")
        answer.send(
            Msg(
                punch_hole_sent=pb.PunchHoleSent(
                    socket_addr=hole.socket_addr,
                    id="tcpsess001",
                    relay_server=hole.relay_server,
                    version="1.4.9",
                )
            )
        )
        resp = (await a.recv()).punch_hole_response
        assert resp.relay_server == hole.relay_server and resp.pk
        answer.close()
    finally:
        await a.close()
        b.close()


async def test_unknown_and_offline_peers_across_nodes(cluster: Cluster) -> None:
    a = await TcpClient.connect(cluster.node_addr(1), "127.0.0.44")
    try:
        a.send(
            Msg(
                punch_hole_request=pb.PunchHoleRequest(
                    id="nobody0001", licence_key=cluster.public_key
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).punch_hole_response
        assert resp.failure == pb.PunchHoleResponse.ID_NOT_EXIST
    finally:
        a.close()


async def test_relay_request_across_nodes(cluster: Cluster) -> None:
    """A's own RequestRelay (A on n2, B held by n1) and B's RelayResponse at n3."""
    b = await registered(cluster, 0, "relayb0001", "127.0.0.45", b"u-rb")
    a = await TcpClient.connect(cluster.node_addr(1), "127.0.0.46")
    try:
        a.send(
            Msg(
                request_relay=pb.RequestRelay(
                    id="relayb0001",
                    uuid="pair-1",
                    relay_server=cluster.relay(1),
                    licence_key=cluster.public_key,
                )
            )
        )
        req = (await b.recv_kind("request_relay")).request_relay
        assert req.uuid == "pair-1" and req.relay_server == cluster.relay(1)
        answer = await TcpClient.connect(cluster.node_addr(2), "127.0.0.45")
        answer.send(
            Msg(
                relay_response=pb.RelayResponse(
                    socket_addr=req.socket_addr,
                    uuid="pair-1",
                    relay_server=req.relay_server,
                    id="relayb0001",
                    version="1.4.9",
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).relay_response
        assert resp.uuid == "pair-1" and resp.relay_server == cluster.relay(1) and resp.pk
        answer.close()
    finally:
        a.close()
        b.close()


async def test_punch_then_relay_lands_both_sides_on_one_relay(cluster: Cluster) -> None:
    """The other relay shape: B answers the PunchHole with a RelayResponse naming the relay
    n2 chose; A hears the same concrete relay."""
    b = await registered(cluster, 0, "relayb0002", "127.0.0.47", b"u-rb2")
    a = await TcpClient.connect(cluster.node_addr(1), "127.0.0.48")
    try:
        a.send(
            Msg(
                punch_hole_request=pb.PunchHoleRequest(
                    id="relayb0002", licence_key=cluster.public_key, force_relay=True
                )
            )
        )
        hole = (await b.recv_kind("punch_hole")).punch_hole
        assert hole.relay_server in cluster.relay_addresses
        answer = await TcpClient.connect(cluster.node_addr(2), "127.0.0.47")
        answer.send(
            Msg(
                relay_response=pb.RelayResponse(
                    socket_addr=hole.socket_addr,
                    uuid="pair-2",
                    relay_server=hole.relay_server,
                    id="relayb0002",
                    version="1.4.9",
                )
            )
        )
        resp = (await a.recv_nonkeyexchange()).relay_response
        assert resp.relay_server == hole.relay_server and resp.uuid == "pair-2"
        answer.close()
    finally:
        a.close()
        b.close()


async def test_relays_are_shared_out_by_load(cluster: Cluster) -> None:
    """Many punches from one node spread over every node's relay (least loaded first)."""
    b = await registered(cluster, 0, "loadb00001", "127.0.0.49", b"u-lb")
    seen: list[str] = []
    try:
        for i in range(6):
            a = await TcpClient.connect(cluster.node_addr(1), f"127.0.1.{i + 1}")
            a.send(
                Msg(
                    punch_hole_request=pb.PunchHoleRequest(
                        id="loadb00001", licence_key=cluster.public_key
                    )
                )
            )
            seen.append((await b.recv_kind("punch_hole")).punch_hole.relay_server)
            a.close()
    finally:
        b.close()
    assert set(seen) == cluster.relay_addresses, seen


async def test_online_query_answers_for_peers_on_every_node(cluster: Cluster) -> None:
    peers = [
        await registered(cluster, i, f"online000{i}", f"127.0.0.5{i}", f"u-on{i}".encode())
        for i in range(3)
    ]
    ids = ["online0000", "missing001", "online0001", "online0002"]
    try:
        for node in range(3):
            a = await TcpClient.connect(cluster.nat_addr(node), "127.0.0.59")
            a.send(Msg(online_request=pb.OnlineRequest(id="asker", peers=ids)))
            states = (await a.recv()).online_response.states
            assert states == bytes([0b1011_0000]), (node, states)
            a.close()
    finally:
        for p in peers:
            p.close()


async def test_a_peer_moves_and_its_old_node_forgets_it(cluster: Cluster) -> None:
    uuid, pk = b"u-move", os.urandom(32)
    old = await connected_peer(cluster.node_addr(0), "127.0.0.60")
    assert await old.register_pk("moving0001", uuid, pk) == OK
    new = await connected_peer(cluster.node_addr(1), "127.0.0.60")
    assert await new.register_pk("moving0001", uuid, pk) == OK
    assert await directory_entry(cluster, "moving0001") == ("n2", uuid)
    await asyncio.sleep(0.2)
    assert await old.register_peer("moving0001")  # n1 dropped it: send your key
    a = await TcpClient.connect(cluster.node_addr(0), "127.0.0.61")
    try:
        a.send(
            Msg(
                punch_hole_request=pb.PunchHoleRequest(
                    id="moving0001", licence_key=cluster.public_key
                )
            )
        )
        assert (await new.recv_kind("punch_hole")).punch_hole  # from n2, its new holder
        assert await old.nothing(0.3)
    finally:
        a.close()
        old.close()
        new.close()


async def test_one_id_two_machines_two_nodes_exactly_one_ok_per_round(cluster: Cluster) -> None:
    """1,000 rounds: the same new id claimed at once from n1 and n2 with two uuids. The
    directory decides: exactly one OK, the other UUID_MISMATCH, and the entry agrees."""
    p = await connected_peer(cluster.node_addr(0), "127.0.0.62")
    q = await connected_peer(cluster.node_addr(1), "127.0.0.63")
    winners: dict[str, tuple[str, bytes]] = {}
    try:
        for round_ in range(1000):
            peer_id = f"race{round_:06d}"
            results = await asyncio.gather(
                p.register_pk(peer_id, b"uuid-p", b"P" * 32),
                q.register_pk(peer_id, b"uuid-q", b"Q" * 32),
            )
            if sorted(results) != sorted([OK, R.UUID_MISMATCH]):
                problems = [
                    line
                    for i in range(2)
                    for line in cluster.log_of(i).splitlines()
                    if peer_id in line or "ERROR" in line
                ]
                raise AssertionError(f"round {round_}: {results}\n" + "\n".join(problems[-20:]))
            winners[peer_id] = ("n1", b"uuid-p") if results[0] == OK else ("n2", b"uuid-q")
    finally:
        p.close()
        q.close()
    for peer_id in list(winners)[::50]:
        assert await directory_entry(cluster, peer_id) == winners[peer_id]


async def test_id_change_is_unique_across_the_cluster(cluster: Cluster) -> None:
    held = await registered(cluster, 2, "takenid001", "127.0.0.64", b"u-taken")
    me = await registered(cluster, 0, "changeme01", "127.0.0.65", b"u-me")
    try:
        for node, new_id, expected in ((1, "takenid001", R.ID_EXISTS), (1, "changed001", OK)):
            c = await TcpClient.connect(cluster.node_addr(node), "127.0.0.65")
            c.send(Msg(register_pk=pb.RegisterPk(old_id="changeme01", id=new_id, uuid=b"u-me")))
            assert (await c.recv_nonkeyexchange()).register_pk_response.result == expected
            c.close()
        assert await directory_entry(cluster, "changeme01") is None
        assert await directory_entry(cluster, "changed001") == ("n2", b"u-me")
        assert await directory_entry(cluster, "takenid001") == ("n3", b"u-taken")
    finally:
        held.close()
        me.close()


def test_messages_decode_as_the_client_sends_them() -> None:
    assert parse(Msg(online_request=pb.OnlineRequest(id="x")).SerializeToString())
