"""Cost of the pure-Python address conversions on the heartbeat path, against the
``socket`` module's C functions they replaced, in the same invocation.

The rendezvous core may not import ``socket`` (tests/test_architecture.py), so
``peer_registry.pack_addr`` (every RegisterPeer) and ``addr_mangle.try_into_v4`` (every
datagram, at ingress) convert IP text themselves. The baseline here is the previous
implementation with ``inet_aton``/``inet_pton``. Rounds of the two alternate, and the best
round of each counts, so a busy machine skews both alike.

Usage: ``.venv/bin/python bench/addr_pack.py [--n 200000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from pyhbb.rendezvous.peer_registry import pack_addr
from pyhbb.wire.addr_mangle import try_into_v4


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
    cases: list[tuple[str, Callable[[Any], object], Callable[[Any], object], list[Any]]] = [
        ("pack_addr, IPv4", pack_addr, socket_pack_addr, v4),
        ("pack_addr, IPv6", pack_addr, socket_pack_addr, v6),
        ("try_into_v4, IPv6 source", try_into_v4, socket_try_into_v4, [ip for ip, _ in v6]),
    ]
    print(f"ns per call, best of {a.rounds} alternating rounds over {a.n:,} addresses:")
    for label, pure, baseline, inputs in cases:
        for x in inputs[:1000]:
            assert pure(x) == baseline(x), x
        t_pure = t_base = float("inf")
        for _ in range(a.rounds):
            t_base = min(t_base, best_ns(baseline, inputs, 1))
            t_pure = min(t_pure, best_ns(pure, inputs, 1))
        print(
            f"  {label:26s} socket {t_base:6.0f}  pure {t_pure:6.0f}  ratio {t_pure / t_base:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
