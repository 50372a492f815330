"""What hbbr's TCP and WebSocket client adapters share: an asyncio ``Protocol`` that is
also the core's :class:`~pyhbb.relay.conns.RelayConn`.

A client connection lives through the core's phases: before its first message the
Protocol reports bytes, messages and deadlines to the core; while it waits for its
partner it is not read (TCP) or its messages are kept (WebSocket); once paired it is
either handed to the splice pump (TCP with TCP) or becomes one end of a message
:class:`~pyhbb.relay.ws_bridge.Bridge`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Protocol, cast

from pyhbb.net.forwarded import Network
from pyhbb.relay.actions import Action
from pyhbb.relay.conns import Addr, Kind, Phase, RelayConn
from pyhbb.relay.core import RelayCore
from pyhbb.relay.ws_bridge import Bridge, ReadPause

# Back-pressure on bridged sessions: past this much unsent data on one end, the other end
# is not read until the buffer is down to WRITE_LOW.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
# A closing connection whose client neither reads what is left nor answers the
# WebSocket close is aborted after this long.
CLOSE_TIMEOUT = 10.0


class Runner(Protocol):
    """The server side every client protocol reports to."""

    @property
    def core(self) -> RelayCore: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def trusted_proxies(self) -> Sequence[Network]: ...

    def run(self, actions: list[Action]) -> None:
        """Perform the core's actions."""

    def opened(self, conn: ClientProtocol) -> None: ...

    def lost(self, conn: ClientProtocol) -> None: ...


class ClientProtocol(asyncio.Protocol, RelayConn):
    """One relay client connection. Built at accept time, before its transport exists
    (the core may refuse it first: then only the socket is closed)."""

    __slots__ = ("_closer", "_paused", "_runner", "_sock", "_timer", "_transport", "bridge")

    def __init__(
        self, runner: Runner, sock: socket.socket, peer: Addr, kind: Kind, loopback: bool = False
    ) -> None:
        RelayConn.__init__(self, peer, kind, loopback)
        self._runner = runner
        self._sock: socket.socket | None = sock  # until the transport takes it over
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None  # the core's deadline
        self._closer: asyncio.TimerHandle | None = None  # aborts a close that takes too long
        self._paused = ReadPause(0)
        self.bridge: Bridge | None = None

    # -- transport life cycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = t = cast(asyncio.Transport, transport)
        self._sock = None
        self._runner.opened(self)
        if self.phase is Phase.CLOSED:  # dropped while the transport was being made
            t.abort()
            return
        t.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self._opened()

    def _opened(self) -> None:
        """Set up per-transport state."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._runner.lost(self)
        if self.bridge is not None:
            self.bridge.close(self._lost_reason(exc))
        elif self.phase in (Phase.HANDSHAKE, Phase.WAITING):
            self._runner.core.closed(self, self._runner.loop.time())
        # Last: closing the bridge above may have armed this end's timers again.
        self._cancel_deadline()
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None

    def _lost_reason(self, exc: Exception | None) -> str:
        if exc is not None:
            return f"{self.kind.value}: {getattr(exc, 'strerror', None) or exc}"
        return "tcp: end of stream" if self.kind is Kind.TCP else "websocket closed"

    @property
    def unsent(self) -> int:
        """Bytes accepted for this client that the kernel has not taken yet."""
        t = self._transport
        return t.get_write_buffer_size() if t is not None and not t.is_closing() else 0

    # -- the core's deadline ----------------------------------------------------------------

    def set_deadline(self, at: float) -> None:
        self._cancel_deadline()
        self._timer = self._runner.loop.call_at(at, self._on_deadline)

    def _cancel_deadline(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_deadline(self) -> None:
        self._timer = None
        runner = self._runner
        runner.run(runner.core.deadline(self, runner.loop.time()))

    # -- reading, with every reason to pause it ---------------------------------------------

    def pause(self, reason: ReadPause) -> None:
        t = self._transport
        if not self._paused and t is not None and not t.is_closing():
            t.pause_reading()
        self._paused |= reason

    def resume(self, reason: ReadPause) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        t = self._transport
        if not self._paused and t is not None and not t.is_closing():
            t.resume_reading()

    # A full write buffer stops reading where the data comes from: the other end once
    # bridged, else this client itself (whose pings, say, it does not read answers to).
    def pause_writing(self) -> None:
        if self.bridge is not None:
            self.bridge.partner(self).pause(ReadPause.PEER)
        else:
            self.pause(ReadPause.UNREAD)

    def resume_writing(self) -> None:
        self.resume(ReadPause.UNREAD)
        if self.bridge is not None:
            self.bridge.partner(self).resume(ReadPause.PEER)

    # -- bridge end (ws_bridge.BridgeEnd) ------------------------------------------------------

    def attach(self, bridge: Bridge) -> list[bytes]:
        """Join ``bridge``; return what was received while waiting."""
        raise NotImplementedError

    def send_payloads(self, payloads: list[bytes]) -> None:
        """Send each payload as one message of this transport."""
        raise NotImplementedError

    # -- actions ------------------------------------------------------------------------------

    def wait(self) -> None:
        """The core put this connection in the waiting table."""
        self._cancel_deadline()

    def drop(self) -> None:
        """Close a connection that is not in a session."""
        self._cancel_deadline()
        if self._transport is None:
            if self._sock is not None:
                self._sock.close()
            return
        self._close()

    def end(self) -> None:
        """The bridge closes: close this end gracefully."""
        self._close()

    def abort(self) -> None:
        """Close at once (server shutdown, or a close that took too long)."""
        self._cancel_deadline()
        if self._transport is not None:
            self._transport.abort()
        elif self._sock is not None:
            self._sock.close()

    def _close(self) -> None:
        """Close after what is buffered is sent, within :data:`CLOSE_TIMEOUT`."""
        t = self._transport
        assert t is not None
        t.close()
        self._abort_later()

    def _abort_later(self) -> None:
        if self._closer is None and self._transport is not None:
            self._closer = self._runner.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def __repr__(self) -> str:
        return RelayConn.__repr__(self)
