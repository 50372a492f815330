"""Free loopback port blocks for servers whose ports are derived from a base port."""

from __future__ import annotations

import random
import socket


def _free(port: int, kinds: tuple[socket.SocketKind, ...]) -> bool:
    for kind in kinds:
        for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
            s = socket.socket(family, kind)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind((host, port))
            except OSError:
                return False
            finally:
                s.close()
            break
    return True


def free_base_port(offsets: tuple[int, ...] = (-1, 0, 1, 2), tries: int = 200) -> int:
    """A base port P such that P+offset is free for TCP and UDP for every offset."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM)
    for _ in range(tries):
        base = random.randrange(20000, 32000)  # below the ephemeral range
        if all(_free(base + off, kinds) for off in offsets):
            return base
    raise RuntimeError("no free port block found")
