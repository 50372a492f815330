"""Relaying when at least one side is a WebSocket (§2.4, §8.3).

Messages are forwarded one to one: a TCP frame's payload becomes one binary WebSocket
message and a binary message becomes one TCP frame. Text messages and empty payloads
(heartbeats) are not forwarded but count as activity.

Everything runs in the two ends' Protocol callbacks, with their transports' flow control
for back-pressure: when one end's write buffer passes its high-water mark, the other end
stops reading until it drains (``pause_writing``/``resume_writing`` -> ``pause``/
``resume``); when the bandwidth limiter asks for a pause, the end that read the bytes
stops reading for that long. Either end closing or failing closes both.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Protocol

from pyhbb.relay.splice_pump import Budget
from pyhbb.wire.framing import FrameError

log = logging.getLogger(__name__)

# Clients' WebSocket library refuses messages above 64 MiB, so nothing larger can be
# useful on a bridged session; the TCP side of a bridge uses the same frame limit.
MAX_MESSAGE = 64 * 1024 * 1024


class ReadPause(enum.IntFlag):
    """Why an end is not being read; it is read again once no reason is left."""

    WAITING = 1  # no partner yet (TCP), or enough messages kept for it (WebSocket)
    RATE = 2  # the bandwidth limiter asked for a pause
    PEER = 4  # the other end's write buffer is full
    UNREAD = 8  # this end's own write buffer is full (before the session)


class BridgeEnd(Protocol):
    """One side of a bridged session (a TCP or WebSocket client connection)."""

    def attach(self, bridge: Bridge) -> list[bytes]:
        """Join ``bridge``; return the payloads received before (in order). Raises
        :class:`~pyhbb.wire.framing.FrameError` if they are not valid frames."""

    def send_payloads(self, payloads: list[bytes]) -> None:
        """Send each (non-empty) payload as one message of this side's transport."""

    def pause(self, reason: ReadPause) -> None: ...

    def resume(self, reason: ReadPause) -> None: ...

    def end(self) -> None:
        """Close (gracefully, within a bounded time)."""


class Bridge:
    """Forwards messages between two ends until either ends or :meth:`close` is called.

    ``on_close(reason)`` is called once, after both ends were told to close.
    """

    __slots__ = ("_a", "_b", "_budget", "_loop", "_on_close", "_timers", "activity", "closed")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        a: BridgeEnd,
        b: BridgeEnd,
        budget: Budget,
        on_close: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._a = a
        self._b = b
        self._budget = budget
        self._on_close = on_close
        self._timers: dict[BridgeEnd, asyncio.TimerHandle] = {}
        self.activity = 0
        """Grows with every chunk or message received: the idle rule's input."""
        self.closed = False

    def start(self) -> None:
        """Attach both ends, then forward what each received while waiting."""
        try:
            early = [(end, end.attach(self)) for end in (self._a, self._b)]
        except FrameError as e:
            self.close(f"tcp: {e}")
            return
        for end, payloads in early:
            if payloads:
                self.forward(end, payloads)

    def partner(self, end: BridgeEnd) -> BridgeEnd:
        return self._b if end is self._a else self._a

    def forward(self, src: BridgeEnd, payloads: list[bytes]) -> None:
        """``src`` received ``payloads`` (possibly none: a partial frame, a text message
        or a control frame still counts as activity)."""
        if self.closed:
            return
        self.activity += 1
        payloads = [p for p in payloads if p]  # empty payloads are heartbeats
        if not payloads:
            return
        self.partner(src).send_payloads(payloads)
        delay = self._budget.consume(sum(map(len, payloads)), self._loop.time())
        if delay > 0 and not self.closed:
            src.pause(ReadPause.RATE)
            self._timers[src] = self._loop.call_later(delay, self._resume, src)

    def _resume(self, end: BridgeEnd) -> None:
        del self._timers[end]
        self.activity += 1  # a throttled session is not idle
        end.resume(ReadPause.RATE)

    def close(self, reason: str) -> None:
        """End the session; idempotent."""
        if self.closed:
            return
        self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._a.end()
        self._b.end()
        try:
            self._on_close(reason)
        except Exception:  # a bug in the owner must not leave the ends half-closed
            log.exception("relay close callback failed")
