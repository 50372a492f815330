"""User-mode CPU per RegisterPeer, in-process, without sockets or kernel time.

Complements ``hbbs_load.py``, whose server CPU per request is mostly kernel time on
loopback (and whose sampling profilers over-weight system calls). Here every stage of
the heartbeat path runs in a loop over pre-encoded datagrams from N registered peers:

1. protobuf parse + ``WhichOneof`` (the floor of any Python design);
2. the uvloop reference design's ``datagram_received`` (``hbbs_baseline.py``);
3. ``RendezvousCore.on_udp`` (pyhbb's core alone);
4. ``UdpEndpoint.datagram_received`` (pyhbb's adapter + core + executor), reply ``sendto``
   going to a transport that drops it.

Then cProfile over stage 4 ranks pyhbb's functions by own time. cProfile inflates the
cost of each Python call, so read the shares, not the absolute figures.

With ``--ipv6`` the peers send from distinct global IPv6 addresses instead of IPv4
(dual-stack ``::ffff:`` form), which takes the IPv6 text parsing on the heartbeat path.

Usage: ``.venv/bin/python bench/hbbs_corebench.py [--peers 20000] [--rounds 5] [--ipv6]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from hbbs_baseline import Baseline
from hbbs_loadgen import Layout, register_peer, register_pk
from hbbs_memory import bench_settings

from pyhbb.rendezvous.actions import LoadPeer
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.http_proxy import HttpProxy
from pyhbb.rendezvous.adapters.udp import UdpEndpoint
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.store.base import PeerStore
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import try_into_v4


class NullTransport:
    """Enough of a DatagramTransport for the protocols: every send is dropped."""

    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


Datagram = tuple[bytes, tuple[str, int, int, int]]


def datagrams(layout: Layout, kind: Callable[[str, int], bytes], ipv6: bool) -> list[Datagram]:
    """Each peer's datagram with the source address form of a dual-stack socket."""
    out = []
    for a in layout.addr_numbers():
        ip = f"2001:db8:{a >> 16:x}:{a & 0xFFFF:x}::1" if ipv6 else "::ffff:" + layout.addr_ip(a)
        for k, i in enumerate(layout.addr_peers(a)):
            out.append((kind(layout.peer_id(i), i), (ip, 20_000 + k, 0, 0)))
    return out


def timed(
    label: str, fn: Callable[[bytes, Any], object], dgrams: list[Datagram], rounds: int
) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for data, addr in dgrams:
            fn(data, addr)
        best = min(best, (time.perf_counter() - t0) / len(dgrams))
    print(f"  {best * 1e6:6.2f} µs  {label}")
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--ipv6", action="store_true", help="peers on IPv6 addresses")
    return asyncio.run(run(ap.parse_args(argv)))


async def run(a: argparse.Namespace) -> int:
    """The measurement, inside an event loop because the executor needs one."""
    layout = Layout(a.peers, 250)
    regs = datagrams(layout, register_pk, a.ipv6)
    beats = datagrams(layout, lambda peer_id, _i: register_peer(peer_id), a.ipv6)
    core_beats = [(data, (try_into_v4(addr[0]), addr[1])) for data, addr in beats]

    core = RendezvousCore(bench_settings())
    proxy = HttpProxy("http://127.0.0.1:9", 1024)
    executor = Executor(core, cast(PeerStore, None), time.monotonic, proxy.handle)
    endpoint = UdpEndpoint(core, executor)
    transport = NullTransport()
    endpoint.connection_made(cast(Any, transport))
    now = time.monotonic()
    for data, addr in regs:
        src = (try_into_v4(addr[0]), addr[1])
        for action in core.on_udp(data, src, now):
            if isinstance(action, LoadPeer):
                core.peer_loaded(action.peer_id, None, now)
    baseline = Baseline()
    baseline.connection_made(cast(Any, transport))
    for data, addr in regs:
        baseline.datagram_received(data, cast(Any, addr))

    def parse(data: bytes, addr: Any) -> object:
        msg = pb.RendezvousMessage()
        msg.ParseFromString(data)
        return msg.WhichOneof("union")

    def core_only(data: bytes, src: Any) -> object:
        return core.on_udp(data, src, time.monotonic())

    sent0 = transport.sent
    print(f"user CPU per RegisterPeer, best of {a.rounds} rounds over {len(beats):,} peers:")
    t_parse = timed("protobuf parse + WhichOneof", parse, beats, a.rounds)
    r = a.rounds
    t_base = timed("uvloop reference: datagram_received", baseline.datagram_received, beats, r)
    timed("pyhbb RendezvousCore.on_udp (core only)", core_only, core_beats, r)
    t_full = timed("pyhbb UdpEndpoint.datagram_received", endpoint.datagram_received, beats, r)
    if transport.sent - sent0 != 2 * a.rounds * len(beats):
        print(f"  (warning: {transport.sent - sent0} replies for {2 * a.rounds * len(beats)})")
    print(
        f"  pyhbb / reference design: {t_full / t_base:.2f}; pyhbb Python beyond the "
        f"protobuf parse: {(t_full - t_parse) * 1e6:.2f} µs"
    )

    prof = cProfile.Profile()
    prof.enable()
    for data, addr in beats:
        endpoint.datagram_received(data, cast(Any, addr))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(a.top)
    print("\ncProfile of UdpEndpoint.datagram_received (own time per function):")
    print("\n".join(ln for ln in buf.getvalue().splitlines() if ln.strip())[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
