"""Listening sockets as the official servers make them (docs/protocol.md §1.3).

Without a bind address: an IPv6 socket on ``[::]`` with IPV6_V6ONLY cleared (dual stack),
falling back to ``0.0.0.0`` where IPv6 is unavailable. With one: exactly that address.
SO_REUSEADDR only; unlike upstream no SO_REUSEPORT, so a second instance on the same
ports fails loudly instead of silently sharing the traffic.
"""

from __future__ import annotations

import contextlib
import errno
import socket

# Re-exported for pyhbb.relay.server, which imports it from here; it lives in hostport.
from pyhbb.net.hostport import is_loopback as is_loopback

BACKLOG = 1024


class BindError(OSError):
    """A listening socket could not be created; the message names the address and port."""


def _family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _make(kind: socket.SocketKind, bind: str | None, port: int) -> socket.socket:
    candidates: list[tuple[socket.AddressFamily, str]]
    if bind:
        candidates = [(_family_of(bind), bind)]
    else:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    last: OSError | None = None
    for family, host in candidates:
        try:
            sock = socket.socket(family, kind)
        except OSError as e:  # no IPv6 support in this kernel/container
            last = e
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not bind:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            last = e
            if e.errno == errno.EADDRINUSE:
                break  # the fallback would hit the same port
            continue
        sock.setblocking(False)
        return sock
    proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
    where = f"{bind or '[::]/0.0.0.0'} port {port}"
    hint = (
        " (is another hbbs/hbbr already running?)"
        if last and last.errno == errno.EADDRINUSE
        else ""
    )
    raise BindError(f"cannot listen on {proto} {where}: {last}{hint}")


def tcp_listener(bind: str | None, port: int) -> socket.socket:
    sock = _make(socket.SOCK_STREAM, bind, port)
    sock.listen(BACKLOG)
    return sock


def udp_socket(bind: str | None, port: int, rmem: int = 0) -> socket.socket:
    sock = _make(socket.SOCK_DGRAM, bind, port)
    if rmem > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rmem)
    return sock


def set_nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
