"""The link interface the executor drives: what every hbbs connection adapter provides."""

from __future__ import annotations

from abc import abstractmethod

from pyhbb.rendezvous.links import Link


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
