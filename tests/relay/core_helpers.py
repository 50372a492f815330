"""Building blocks for the relay core's unit tests: a core, connections, messages."""

from __future__ import annotations

from typing import Any

from pyhbb.relay.actions import Action, StartBridge, StartSplice, Wait
from pyhbb.relay.bandwidth import RelaySettings
from pyhbb.relay.conns import Kind, RelayConn, Session
from pyhbb.relay.core import RelayCore, RelayLimits
from pyhbb.relay.lists import IpList
from pyhbb.wire.framing import encode_frame
from tests.relay.clients import request_relay

LIMITS: dict[str, Any] = dict(
    pair_wait_timeout=30.0,
    first_message_timeout=30.0,
    idle_timeout=30.0,
    max_waiting=100,
    max_waiting_per_ip=10,
    max_handshakes=100,
    max_handshakes_per_ip=10,
)


def make_core(
    licence_key: str = "",
    blocklist: tuple[str, ...] = (),
    blacklist: tuple[str, ...] = (),
    now: float = 0.0,
    settings: RelaySettings | None = None,
    **limits: Any,
) -> RelayCore:
    return RelayCore(
        RelayLimits(**{**LIMITS, **limits}),
        settings or RelaySettings(1024, 128, 32, 66, 1800),
        licence_key,
        IpList(blacklist),
        IpList(blocklist),
        now,
    )


def tcp(ip: str = "1.1.1.1", port: int = 1000, loopback: bool = False) -> RelayConn:
    return RelayConn((ip, port), Kind.TCP, loopback)


def ws(ip: str = "1.1.1.1", port: int = 1000) -> RelayConn:
    return RelayConn((ip, port), Kind.WS)


def frame(uuid: str, licence_key: str = "") -> bytes:
    return encode_frame(request_relay(uuid, licence_key))


def arrive_tcp(
    core: RelayCore, conn: RelayConn, uuid: str, now: float = 0.0, extra: bytes = b""
) -> list[Action]:
    """Accept ``conn`` and feed it a RequestRelay frame (and ``extra`` bytes)."""
    core.connected(conn, now)
    return core.tcp_data(conn, frame(uuid) + extra, now)


def arrive_ws(core: RelayCore, conn: RelayConn, uuid: str, now: float = 0.0) -> list[Action]:
    core.connected(conn, now)
    core.ws_opened(conn, conn.peer, now)
    return core.ws_message(conn, request_relay(uuid), now)


def paired(core: RelayCore, first: RelayConn, second: RelayConn, now: float = 0.0) -> Session:
    """Make ``first`` wait and ``second`` pair with it; return the session."""
    arrive = {Kind.TCP: arrive_tcp, Kind.WS: arrive_ws}
    assert arrive[first.kind](core, first, "u", now) == [Wait(first)]
    (start,) = arrive[second.kind](core, second, "u", now)
    assert isinstance(start, StartSplice | StartBridge)
    return start.session


class FakeMover:
    """Stands for the splice pump or the bridge."""

    def __init__(self) -> None:
        self.activity = 0
        self.closed: list[str] = []

    def close(self, reason: str) -> None:
        self.closed.append(reason)
