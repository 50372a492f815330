"""One re-arming timer per connection for the 30 s idle rule, cheap on busy links:
activity only stores a timestamp; the timer re-arms itself for the remaining time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class IdleTimer:
    __slots__ = ("_handle", "_loop", "_on_idle", "last", "timeout")

    def __init__(self, timeout: float, on_idle: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self._on_idle = on_idle
        self.last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self.last + timeout, self._check
        )

    def touch(self) -> None:
        self.last = self._loop.time()

    def set_timeout(self, timeout: float) -> None:
        self.timeout = timeout
        self.touch()
        self.cancel()
        self._handle = self._loop.call_at(self.last + timeout, self._check)

    def _check(self) -> None:
        deadline = self.last + self.timeout
        if self._loop.time() >= deadline:
            self._handle = None
            self._on_idle()
        else:
            self._handle = self._loop.call_at(deadline, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class HeartbeatTimer:
    """Calls ``beat`` every ``interval`` seconds until cancelled (session heartbeats)."""

    __slots__ = ("_beat", "_handle", "_loop", "interval")

    def __init__(self, interval: float, beat: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.interval = interval
        self._beat = beat
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._handle = self._loop.call_later(self.interval, self._tick)
        self._beat()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
