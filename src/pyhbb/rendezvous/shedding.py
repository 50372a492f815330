"""Shedding forged RegisterPk datagrams cheaply while the look-up budget is spent.

A spoofed flood of RegisterPk over UDP (issue 12) is refused by the look-up budget
(:class:`~pyhbb.rendezvous.fair_budget.FairBudget`) once its global rate is spent. Deciding
each refusal by the full path cost hbbs its whole CPU at 30,000 datagrams/s (an IP blocker
entry and two rate-table entries written per forged source, a reply built and sent to an
address that never asked), so the kernel dropped the genuine datagrams at random.

This gate is asked first, before the datagram is parsed (when it has the usual encoding of a
RegisterPk; any other encoding right after parsing) and before any table is written: while
the global rate is spent, a request that is not a repeat the retry lane has room for
cannot be admitted, so it is dropped here with no table entry and no answer; so is one
whose source or source prefix has spent its share. As DNS response-rate
limiting does, one dropped request in :data:`SLIP` still gets its TOO_FREQUENT answer, so a
genuine client whose requests keep being dropped learns why now and then. Silence costs a
genuine client less than that answer: it resends 3 s after no answer (15 s after
TOO_FREQUENT, docs/protocol.md §12), from the same address and port, and the repeat gets
through the retry lane. What was shed is logged at most once every
:data:`REPORT_INTERVAL` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

from pyhbb.rendezvous.fair_budget import REPEATED, SURELY, FairBudget
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")

SLIP = 16  # one shed request in SLIP is answered TOO_FREQUENT, the others dropped
REPORT_INTERVAL = 10.0  # seconds between log lines while shedding

# Verdicts of Shedding.check
PASS = 0  # decide by the full path
PASS_REPEATED = 1  # decide by the full path, through the retry lane if need be
DROP = 2  # no answer
SLIP_ANSWER = 3  # answer TOO_FREQUENT, nothing else


class Shedding:
    """The gate in front of UDP RegisterPk (see the module), with its counts."""

    __slots__ = ("_budget", "_next_report", "_reported", "_since", "dropped", "slip", "slipped")

    def __init__(self, budget: FairBudget, slip: int = SLIP) -> None:
        if slip < 0:
            raise ValueError(f"slip must be 0 (never answer) or more, not {slip}")
        self._budget = budget
        self.slip = slip
        self.dropped = 0
        """Requests shed so far, answered or not."""
        self.slipped = 0
        """Of those, answered TOO_FREQUENT."""
        self._reported = 0
        self._since: float | None = None
        self._next_report = 0.0

    def check(self, src: Addr, request: Hashable, now: float) -> int:
        """:data:`PASS`, :data:`PASS_REPEATED`, :data:`DROP` or :data:`SLIP_ANSWER` for
        a RegisterPk by UDP from ``src``; ``request`` tells a repeat (the datagram's bytes:
        a client resends the same ones)."""
        verdict = self._budget.refuses_surely(src, request, now)
        if verdict != SURELY:
            return PASS_REPEATED if verdict == REPEATED else PASS
        self.dropped = dropped = self.dropped + 1
        if self._since is None:
            self._since = now
        if now >= self._next_report:
            self.report(now)
        if self.slip and dropped % self.slip == 0:
            self.slipped += 1
            return SLIP_ANSWER
        return DROP

    def report(self, now: float) -> None:
        """Log what was shed since the last line, if anything and if it is time (the
        housekeeping timer calls this too, so the end of a flood is reported)."""
        shed = self.dropped - self._reported
        if not shed or now < self._next_report or self._since is None:
            return
        log.warning(
            "shedding RegisterPk: %d dropped in the last %.0f s without a look-up (%s "
            "answered TOO_FREQUENT): they arrive faster than the lookup rate=%g per second "
            "allows (a flood of forged requests?); clients that repeat their request still "
            "get in; %d dropped so far",
            shed,
            max(1.0, now - self._since),
            f"1 in {self.slip}" if self.slip else "none",
            self._budget.rate,
            self.dropped,
        )
        self._reported = self.dropped
        self._since = None
        self._next_report = now + REPORT_INTERVAL
