"""What every hbbs connection adapter shares: the link interface and the server context."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nacl.signing import SigningKey

from pyhbb.net.conn_limits import ConnectionLimiter
from pyhbb.net.forwarded import Network
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.links import Link

if TYPE_CHECKING:
    from pyhbb.rendezvous.adapters.executor import Executor
    from pyhbb.rendezvous.console import Console

IDLE_TIMEOUT = 30.0  # upstream: every read on P, P-1 and P+2 has a 30 s timeout
WS_HANDSHAKE_TIMEOUT = 10.0
MAX_WRITE_BUFFER = 256 * 1024  # a client that stops reading is cut off past this


class IoLink(Link):
    """A link the executor can send on and close."""

    __slots__ = ()

    @abstractmethod
    def send_message(self, payload: bytes) -> None:
        """Send one RendezvousMessage payload (framed/encrypted as the transport needs)."""

    @abstractmethod
    def start_session(self, heartbeat: float, timeout: float) -> None:
        """Switch to a registration session: heartbeats instead of the idle rule."""

    @abstractmethod
    def close(self) -> None:
        """Close after what was already sent has been written."""


@dataclass
class AdapterContext:
    """Everything the adapters need, built once by the server."""

    core: RendezvousCore
    executor: Executor
    limiter: ConnectionLimiter
    console: Console | None
    signing: SigningKey | None = None
    secure_tcp: bool = True
    trusted_proxies: list[Network] = field(default_factory=list)
    max_frame: int = 64 * 1024
    idle_timeout: float = IDLE_TIMEOUT
    message_burst: int = 16
    """Messages a client may send on one connection in a burst (then 1 per second)."""
    links: set[IoLink] = field(default_factory=set)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()
