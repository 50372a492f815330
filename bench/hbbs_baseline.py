"""Reference design for the hbbs benchmark (docs/architecture.md): a minimal uvloop UDP server.

It parses every datagram as a ``RendezvousMessage`` with the same protobuf runtime and
generated code as pyhbb, keeps one compact tuple per peer in a dict, and answers with
pre-encoded constants:

* RegisterPk: store ``(addr, now, pk)`` under the id, reply ``RegisterPkResponse{OK}``;
* RegisterPeer: unknown id -> ``request_pk = true``; known id -> update addr and time,
  reply ``request_pk = false``.

No validation, no rate limits, no database: it is the floor a Python design can reach,
not a server. Usage: ``python bench/hbbs_baseline.py PORT [RCVBUF]``; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from typing import cast

import uvloop

from pyhbb.wire import rendezvous_pb2 as pb

PEER_OK = pb.RendezvousMessage(
    register_peer_response=pb.RegisterPeerResponse(request_pk=False)
).SerializeToString()
PEER_SEND_PK = pb.RendezvousMessage(
    register_peer_response=pb.RegisterPeerResponse(request_pk=True)
).SerializeToString()
PK_OK = pb.RendezvousMessage(register_pk_response=pb.RegisterPkResponse()).SerializeToString()

Record = tuple[tuple[str, int], float, bytes]


class Baseline(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.peers: dict[str, Record] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.time = time.monotonic

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop: not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = pb.RendezvousMessage()
        try:
            msg.ParseFromString(data)
        except Exception:
            return
        kind = msg.WhichOneof("union")
        transport = self.transport
        assert transport is not None
        if kind == "register_peer":
            peer_id = msg.register_peer.id
            record = self.peers.get(peer_id)
            if record is None:
                transport.sendto(PEER_SEND_PK, addr)
                return
            self.peers[peer_id] = (addr, self.time(), record[2])
            transport.sendto(PEER_OK, addr)
        elif kind == "register_pk":
            req = msg.register_pk
            self.peers[req.id] = (addr, self.time(), req.pk)
            transport.sendto(PK_OK, addr)


async def serve(port: int, rcvbuf: int) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    if rcvbuf > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("::", port))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    transport, _ = await loop.create_datagram_endpoint(Baseline, sock=sock)
    try:
        await stop.wait()
    finally:
        transport.close()


def main() -> None:
    port = int(sys.argv[1])
    rcvbuf = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    uvloop.run(serve(port, rcvbuf))


if __name__ == "__main__":
    main()
