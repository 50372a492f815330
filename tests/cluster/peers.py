"""Simulated RustDesk peers for cluster tests.

A peer's UDP socket is *connected* to the node it registers with: the kernel then drops
datagrams from any other address, as a port-restricted NAT would (docs/cluster.md §4),
so a PunchHole sent by the wrong node never arrives and the test fails.
"""

from __future__ import annotations

import asyncio
import os
import socket

from tests.support.rdclient import Msg, UdpPeer, _UdpProto, pb


async def connected_peer(node: tuple[str, int], local: str = "127.0.0.1") -> UdpPeer:
    """A UDP peer behind a simulated port-restricted NAT, registered with ``node``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local, 0))
    sock.connect(node)
    transport, proto = await loop.create_datagram_endpoint(_UdpProto, sock=sock)
    return ConnectedPeer(transport, proto, node)


class ConnectedPeer(UdpPeer):
    def send(self, msg: Msg) -> None:
        self.transport.sendto(msg.SerializeToString())

    def send_raw(self, data: bytes) -> None:
        self.transport.sendto(data)


async def register(peer: UdpPeer, peer_id: str, uuid: bytes, pk: bytes | None = None) -> int:
    """RegisterPeer, then RegisterPk when asked: the result of RegisterPk (or OK)."""
    pk = pk or os.urandom(32)
    if await peer.register_peer(peer_id):
        return await peer.register_pk(peer_id, uuid, pk)
    return pb.RegisterPkResponse.OK
