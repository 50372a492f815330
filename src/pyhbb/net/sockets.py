"""Listening sockets as the official servers make them (docs/protocol.md §1.3).

Without a bind address: an IPv6 socket on ``[::]`` with IPV6_V6ONLY cleared (dual stack),
falling back to ``0.0.0.0`` where IPv6 is unavailable. With one: exactly that address.
SO_REUSEADDR only; unlike upstream no SO_REUSEPORT, so a second instance on the same
ports fails loudly instead of silently sharing the traffic. After a restart in place hbbs
adopts the listeners its previous process left open (:func:`adopt`) instead.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket

# Re-exported for pyhbb.relay.server, which imports it from here; it lives in hostport.
from pyhbb.net.hostport import format_addr
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


class AdoptError(OSError):
    """An inherited descriptor is not the listener expected; the message says why."""


def adopt(fd: int, kind: socket.SocketKind, bind: str | None, port: int) -> socket.socket:
    """The inherited listening socket ``fd`` (a restart in place), checked to be what
    :func:`_make` would bind now: same type, family, address and port, listening for TCP.
    A socket that does not fit is closed; a descriptor that is no socket is left alone
    (it is not ours to close). Raises :class:`AdoptError`."""
    proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise AdoptError(f"inherited {proto} descriptor {fd}: {e.strerror}") from None
    try:
        problem = _mismatch(sock, kind, bind, port)
    except OSError as e:
        problem = str(e)
    if problem is not None:
        sock.close()
        raise AdoptError(f"inherited {proto} descriptor {fd}: {problem}")
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock


def _mismatch(
    sock: socket.socket, kind: socket.SocketKind, bind: str | None, port: int
) -> str | None:
    if sock.type != kind:
        return f"a {sock.type.name} socket, not {kind.name}"
    host, bound_port = sock.getsockname()[:2]
    where = f"bound to {format_addr((host, bound_port))}"
    if bound_port != port:
        return f"{where}, not port {port}"
    if bind:
        try:
            expected = ipaddress.ip_address(bind)
        except ValueError:  # a host name: the family and port say enough
            expected = None
        if sock.family != _family_of(bind) or (
            expected is not None and ipaddress.ip_address(host) != expected
        ):
            return f"{where}, not {bind}"
    elif (sock.family, host) not in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        return f"{where}, not every address"
    elif sock.family == socket.AF_INET6 and sock.getsockopt(
        socket.IPPROTO_IPV6, socket.IPV6_V6ONLY
    ):
        return "IPv6 only, not dual stack"
    if kind == socket.SOCK_STREAM and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return "not listening"
    return None
