"""Fail fast while a loopback server is known to hang.

The API asks hbbs and hbbr short questions over TCP (online states, console commands). A
server that refuses the connection costs nothing, but one whose loop is wedged accepts
and then says nothing, and every page that asks would wait the whole timeout. After a
timed-out ask, asks fail at once for ``period`` seconds; the first ask after that tries
again. Plain state with an injected ``now``: the callers own the clock and the socket.
"""

from __future__ import annotations

PERIOD = 10.0


class TimeoutBackoff:
    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self._until = float("-inf")

    def wait_left(self, now: float) -> float:
        """Seconds before the next ask may go out (0.0: ask now)."""
        return max(0.0, self._until - now)

    def timed_out(self, now: float) -> None:
        self._until = now + self.period

    def answered(self) -> None:
        self._until = float("-inf")
