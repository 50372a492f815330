"""Fair budgets against spoofed floods: DNS response-rate limiting applied to registrations.

A :class:`FairBudget` admits events (a RegisterPk that needs the database, a brand-new id)
at a global rate, but one source address may take at most 1/100 of it and one source
prefix (IPv4 /24, IPv6 /56: :func:`~pyhbb.rendezvous.rate_limits.prefix_key`) at most
1/50, so a forger whose forged sources stay inside a few prefixes cannot spend everyone's
budget. Against a forger spraying sources over the whole address space the shares cannot
tell forged from genuine; the *retry lane* can: a genuine client that was refused sends
the same request again from the same address and port (every 15 s, §12), which a forger
that never sees our answers has no reason to do (and if it does, each forged attempt
costs it twice). A fifth of the global rate is kept for such repeated requests.

*Flood mode* (opt-in, for the new-id budget): while requests are offered faster than the
global rate (and more than :data:`FLOOD_MIN` a second), first-time requests draw from a
bucket of a fifth of it instead of the minute-long burst, until none came too fast for
:data:`FLOOD_HOLD` seconds. Each admitted
new id is a database write, and in a forged flood those writes took the core the event
loop needs (bench/RESULTS.md, flood); genuine clients still come in through the retry
lane, which forgers do not use.

Every table is bounded and O(1) per packet: per-key rates live in :class:`BoundedTable`
(one float per key), and the repeated requests are remembered in fixed memory
(:class:`~pyhbb.rendezvous.recent_keys.RecentKeys`).
"""

from __future__ import annotations

from collections.abc import Hashable

from pyhbb.rendezvous.bounded_table import BoundedTable
from pyhbb.rendezvous.rate_limits import TokenBucket, blocker_key, prefix_key
from pyhbb.rendezvous.recent_keys import RecentKeys

Addr = tuple[str, int]

PREFIX_SHARE = 50  # one source prefix may take 1/50 of the global rate and burst
SOURCE_SHARE = 100  # one source address 1/100
RETRY_SHARE = 5  # repeated requests have their own 1/5 of the global rate
BURST_SECONDS = 60.0  # by default every bucket holds a minute's worth
FLOOD_SHARE = 5  # in flood mode, first-time requests get a fifth of the rate
FLOOD_HOLD = 30.0  # flood mode ends after this long without a second offered too fast
FLOOD_MIN = 50  # fewer first-time requests than this in a second are never a flood
MAX_KEYS = 32_768  # sources and prefixes remembered per budget (~130 bytes each)
# Repeated requests, as (source address, port, request): 4 MiB per generation, each kept 30
# to 60 s, so a client's retry 3 or 15 s later is found (§12). A false positive lets a
# forged request into the retry lane, which is only a fifth of the rate.
RETRY_MARKS_BITS_LOG2 = 25
RETRY_MARKS_PERIOD = 30.0

# Verdicts of FairBudget.refuses_surely
SURELY = "surely"
REPEATED = "repeated"
UNDECIDED = ""

# Outcomes of FairBudget.admit
ADMITTED = ""
SOURCE_LIMIT = "source"
PREFIX_LIMIT = "prefix"
GLOBAL_LIMIT = "global"


class RateTable:
    """A rate limit per key (GCRA): one float per key, the time at which its budget would
    be whole again; a key whose budget is whole is the same as an absent key."""

    __slots__ = ("_now", "interval", "table", "tolerance")

    def __init__(self, rate: float, burst: float, cap: int) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (max(burst, 1.0) - 1.0) * self.interval
        self.table: BoundedTable[Hashable, float] = BoundedTable(cap)
        self._now = 0.0

    def take(self, key: Hashable, now: float) -> bool:
        if now < self._now:
            now = self._now  # a clock that never runs backwards, whatever the caller passes
        self._now = now
        whole_at = self.table.get(key)
        if whole_at is None or whole_at < now:
            whole_at = now
        elif whole_at - now > self.tolerance:
            return False
        self.table[key] = whole_at + self.interval
        return True

    def refuses(self, key: Hashable, now: float) -> bool:
        """Would :meth:`take` refuse ``key`` at ``now``? (Writes nothing.)"""
        whole_at = self.table.get(key)
        return whole_at is not None and whole_at - max(now, self._now) > self.tolerance

    def sweep(self, now: float, budget: int) -> int:
        return self.table.sweep(budget, lambda whole_at: whole_at <= now)


class FairBudget:
    """``rate`` events per second in total, shared fairly between sources (see module)."""

    def __init__(
        self,
        rate: float,
        burst_seconds: float = BURST_SECONDS,
        max_keys: int = MAX_KEYS,
        min_burst: float = 1.0,
        flood_mode: bool = False,
    ) -> None:
        """``min_burst``: what one source or prefix may always do at once; ``flood_mode``:
        see the module."""
        burst = rate * burst_seconds
        self.rate = rate
        self.total = TokenBucket(rate, burst, 0.0)
        self.retries = TokenBucket(rate / RETRY_SHARE, max(1.0, burst / RETRY_SHARE), 0.0)
        prefix_burst = max(2.0, min_burst, burst / PREFIX_SHARE)
        self.prefixes = RateTable(rate / PREFIX_SHARE, prefix_burst, max_keys)
        source_burst = max(1.0, min_burst, burst / SOURCE_SHARE)
        self.sources = RateTable(rate / SOURCE_SHARE, source_burst, max_keys)
        self.marks = RecentKeys(RETRY_MARKS_BITS_LOG2, RETRY_MARKS_PERIOD)
        self.retried = 0
        """Events admitted through the retry lane."""
        self.flood_bucket = (
            TokenBucket(rate / FLOOD_SHARE, max(1.0, rate / FLOOD_SHARE), 0.0)
            if flood_mode
            else None
        )
        self.flooded_until = float("-inf")
        self.floods = 0
        """Times flood mode began."""
        self._second = float("-inf")  # start of the one-second window being counted
        self._offered = 0  # first-time requests offered in it

    def admit(self, src: Addr, request: Hashable, now: float, repeated: bool = False) -> str:
        """:data:`ADMITTED`, or which limit refused ``request`` from ``src``. ``repeated``:
        the caller knows this request is a repeat (:meth:`refuses_surely` said so), so it
        may use the retry lane without being looked up in the marks again."""
        ip = src[0]
        if not self.sources.take(blocker_key(ip), now):
            return SOURCE_LIMIT
        if not self.prefixes.take(prefix_key(ip), now):
            return PREFIX_LIMIT
        if self._first_time_bucket(now).take(now):
            return ADMITTED
        if (repeated or self.marks.seen_or_mark((ip, src[1], request))) and self.retries.take(now):
            self.retried += 1
            return ADMITTED
        return GLOBAL_LIMIT

    def refuses_surely(self, src: Addr, request: Hashable, now: float) -> str:
        """Would :meth:`admit` refuse ``request`` from ``src`` at ``now``? :data:`SURELY`
        while the global rate is spent, unless this is a repeated request the retry lane
        has room for, and when the source or its prefix has spent its share;
        :data:`REPEATED` for such a repeat (pass ``repeated=True`` to :meth:`admit`), else
        :data:`UNDECIDED`. Writes no table: a request met while the global rate is spent
        is only marked (fixed memory), so that its repeat finds the retry lane. The
        flood's cheap first check (:mod:`~pyhbb.rendezvous.shedding`): the common case, a
        new request while the global rate is spent, costs one bucket and one mark."""
        verdict = UNDECIDED
        if self.flooded(now) and self.flood_bucket is not None:
            first_time = self.flood_bucket
        else:
            first_time = self.total
        if first_time.empty(now):
            if not self.marks.seen_or_mark((src[0], src[1], request)) or self.retries.empty(now):
                return SURELY
            verdict = REPEATED
        ip = src[0]
        if self.prefixes.refuses(prefix_key(ip), now) or self.sources.refuses(blocker_key(ip), now):
            return SURELY
        return verdict

    def flooded(self, now: float) -> bool:
        """Whether flood mode is on (see the module)."""
        return now < self.flooded_until

    def _first_time_bucket(self, now: float) -> TokenBucket:
        """Count one first-time request offered at ``now``; the bucket it draws from."""
        if self.flood_bucket is None:
            return self.total
        if now - self._second >= 1.0:
            self._second, self._offered = now, 0
        self._offered += 1
        if self._offered > self.rate and self._offered > FLOOD_MIN:
            if not self.flooded(now):
                self.floods += 1
            self.flooded_until = now + FLOOD_HOLD
        return self.flood_bucket if self.flooded(now) else self.total

    def housekeeping(self, now: float, budget: int) -> None:
        """Expire whole budgets and rotate the retry marks (once a second)."""
        self.sources.sweep(now, budget)
        self.prefixes.sweep(now, budget)
        self.marks.rotate(now)

    @property
    def keys(self) -> int:
        return len(self.sources.table) + len(self.prefixes.table)
