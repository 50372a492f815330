"""Cost of the address conversions on the heartbeat path, against the ``socket`` module's
C functions, in the same invocation.

The rendezvous core may not import ``socket`` (tests/test_architecture.py). Every UDP
RegisterPeer turns its source address into the form a peer record holds, and every
datagram's source goes through ``addr_mangle.try_into_v4`` at ingress. Three forms of the
first are compared: ``inet_aton``/``inet_pton`` (what the core did before it lost the
socket module), the pure-Python packing that replaced them (``pure_pack_addr`` below,
kept here as the reference it was), and ``peer_registry.addr_key``, what records hold
now (the port and the IP *text*, nothing converted). Rounds alternate, and the best round
of each counts, so a busy machine skews all alike.

Usage: ``.venv/bin/python bench/addr_pack.py [--n 200000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from pyhbb.rendezvous.peer_registry import addr_key
from pyhbb.wire.addr_mangle import ip_to_bytes, try_into_v4


def pure_pack_addr(addr: tuple[str, int]) -> bytes:
    """The pure-Python packing the heartbeat path used until records held IP text."""
    ip, port = addr
    return ip_to_bytes(ip) + port.to_bytes(2, "big")


def socket_pack_addr(addr: tuple[str, int]) -> bytes:
    """The previous pack_addr."""
    ip, port = addr
    raw = socket.inet_pton(socket.AF_INET6, ip) if ":" in ip else socket.inet_aton(ip)
    return raw + port.to_bytes(2, "big")


def socket_try_into_v4(ip: str) -> str:
    """The previous try_into_v4."""
    if ":" not in ip:
        return ip
    if ip.startswith("::ffff:") and "." in ip and ":" not in ip[7:]:
        return ip[7:]
    if ip == "::1":
        return ip
    try:
        raw = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
    except OSError:
        return ip
    if raw[:10] == bytes(10) and raw[10:12] in (b"\xff\xff", b"\x00\x00"):
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return ip


def best_ns(fn: Callable[[Any], object], inputs: list[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        best = min(best, (time.perf_counter() - t0) / len(inputs))
    return best * 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    v4 = [
        (f"{1 + i % 223}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i & 0xFFFF) for i in range(a.n)
    ]
    v6 = [(f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::{i % 97:x}", i & 0xFFFF) for i in range(a.n)]
    cases: list[tuple[str, list[tuple[str, Callable[[Any], object]]], list[Any]]] = [
        (
            "address, IPv4",
            [("socket", socket_pack_addr), ("pure pack", pure_pack_addr), ("addr_key", addr_key)],
            v4,
        ),
        (
            "address, IPv6",
            [("socket", socket_pack_addr), ("pure pack", pure_pack_addr), ("addr_key", addr_key)],
            v6,
        ),
        (
            "try_into_v4, IPv6 source",
            [("socket", socket_try_into_v4), ("pure", try_into_v4)],
            [ip for ip, _ in v6],
        ),
    ]
    print(f"ns per call, best of {a.rounds} alternating rounds over {a.n:,} addresses:")
    for label, variants, inputs in cases:
        if label.startswith("try_into_v4"):
            for x in inputs[:1000]:
                assert variants[0][1](x) == variants[1][1](x), x
        best = {name: float("inf") for name, _ in variants}
        for _ in range(a.rounds):
            for name, fn in variants:
                best[name] = min(best[name], best_ns(fn, inputs, 1))
        base = best[variants[0][0]]
        shown = "  ".join(f"{name} {t:6.0f} ({t / base:.2f})" for name, t in best.items())
        print(f"  {label:26s} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
