"""What every hbbs connection adapter shares: the server context and the connection life cycle."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, cast

from nacl.signing import SigningKey

from pyhbb.net.conn_limits import ConnectionLimiter
from pyhbb.net.forwarded import Network
from pyhbb.net.sockets import set_nodelay
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.idle import HeartbeatTimer, IdleTimer
from pyhbb.rendezvous.adapters.io_link import IoLink
from pyhbb.rendezvous.console import Console
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.links import Transport
from pyhbb.wire.addr_mangle import Addr, normalize

log = logging.getLogger("pyhbb.rendezvous")

IDLE_TIMEOUT = 30.0  # upstream: every read on P, P-1 and P+2 has a 30 s timeout
WS_HANDSHAKE_TIMEOUT = 10.0
MAX_WRITE_BUFFER = 256 * 1024
# Real requests are well under 1 KiB (an OnlineRequest for 5,000 IDs still fits): a small
# limit keeps what one connection can make us buffer small.
PLAIN_MAX_FRAME = 64 * 1024  # a client that stops reading is cut off past this


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
    max_frame: int = PLAIN_MAX_FRAME
    """Largest message on an unencrypted connection."""
    secure_max_frame: int = PLAIN_MAX_FRAME
    """Largest message once the secure channel is up (the HTTP tunnel carries bodies)."""
    idle_timeout: float = IDLE_TIMEOUT
    message_burst: int = 16
    """Messages a client may send on one connection in a burst (then 1 per second)."""
    links: set[IoLink] = field(default_factory=set)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Connection events for the metrics: (event, transport) → count, e.g.
    ("accepted", "tcp"), ("closed", "ws"), ("handshake", "secure")."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()


class ProtocolLink(asyncio.Protocol, IoLink):
    """The connection lifecycle the TCP, WebSocket and P-1 adapters share: connection
    limits, the idle timer, session heartbeats, closing and clean-up."""

    __slots__ = ("_beat", "_closed", "_ctx", "_idle", "_registered", "_transport", "peer")
    kind: ClassVar[Transport]

    def __init__(self, ctx: AdapterContext) -> None:
        self._ctx = ctx
        self._closed = True
        self._registered = False
        self._beat: HeartbeatTimer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ctx = self._ctx
        self._transport = cast(asyncio.Transport, transport)
        self.peer: Addr = normalize(transport.get_extra_info("peername"))
        IoLink.__init__(self, self.peer, self.kind)
        if not ctx.limiter.acquire(self.peer[0], per_ip=self._limited_per_ip()):
            ctx.counts["refused", self.kind.value] += 1
            self._transport.abort()
            return
        ctx.counts["accepted", self.kind.value] += 1
        self._registered = True
        self._closed = False
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_nodelay(sock)
        ctx.links.add(self)
        self._idle = IdleTimer(self._first_timeout(), self._on_idle)
        self._opened()

    def _limited_per_ip(self) -> bool:
        return True

    def _first_timeout(self) -> float:
        return self._ctx.idle_timeout

    def _opened(self) -> None:
        """Called once the connection is accepted (limits passed)."""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._registered:
            return
        self._registered = False
        self._closed = True
        self._idle.cancel()
        if self._beat is not None:
            self._beat.cancel()
        ctx = self._ctx
        ctx.counts["closed", self.kind.value] += 1
        ctx.limiter.release(self.peer[0])
        ctx.links.discard(self)
        ctx.core.on_link_closed(self, ctx.executor.clock())

    def start_session(self, heartbeat: float, timeout: float) -> None:
        if self._beat is None and not self._closed:
            self._idle.set_timeout(timeout)
            self._beat = HeartbeatTimer(heartbeat, lambda: self.send_message(b""))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    def abort(self) -> None:
        self._closed = True
        self._transport.abort()

    def _on_idle(self) -> None:
        log.debug("%r: idle for %.0f s; closing", self, self._idle.timeout)
        self.close()
