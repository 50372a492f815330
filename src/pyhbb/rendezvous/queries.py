"""NAT-type test and online-status query (docs/protocol.md §6.11, §6.12)."""

from __future__ import annotations

from collections.abc import Sequence

from pyhbb.rendezvous.state import CoreState
from pyhbb.wire import rendezvous_pb2 as pb


class Queries:
    """Answers that depend only on the asking connection and the peer table."""

    def __init__(self, state: CoreState) -> None:
        self.s = state

    def test_nat(self, port: int, msg: pb.TestNatRequest, with_config: bool) -> bytes:
        """TestNatResponse echoing the observed source ``port`` (the client compares the
        ports seen on P and P-1 from one local port to tell its NAT type)."""
        self.s.stats["nat_tests"] += 1
        resp = pb.TestNatResponse(port=port)
        if with_config and self.s.serial > msg.serial:
            resp.cu.CopyFrom(self.s.config_update)
        return pb.RendezvousMessage(test_nat_response=resp).SerializeToString()

    def online(self, msg: pb.OnlineRequest, now: float) -> bytes:
        """Bitmap of online peers, MSB first, always ceil(N/8) bytes: clients index it
        without bounds checks. IDs beyond ``max_online_query`` are reported offline."""
        return pb.RendezvousMessage(
            online_response=pb.OnlineResponse(states=self.online_states(msg.peers, now))
        ).SerializeToString()

    def online_states(self, peers: Sequence[str], now: float) -> bytes:
        """The bitmap of :meth:`online` for the peers held here (in cluster mode, ORed
        with the other nodes' bitmaps)."""
        self.s.stats["online_queries"] += 1
        states = bytearray((len(peers) + 7) // 8)
        limit = self.s.settings.max_online_query
        online = self.s.peers.online
        disabled = self.s.disabled
        for i, peer_id in enumerate(peers):
            if i >= limit:
                break
            if online(peer_id, now) and peer_id not in disabled:
                states[i >> 3] |= 0x80 >> (i & 7)
        return bytes(states)
