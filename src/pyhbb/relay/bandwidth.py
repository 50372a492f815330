"""Bandwidth control for relayed sessions (§8.4), with time passed in.

Rates are "Mb/s" in the official sense, mebibits per second; traffic is counted in bits
and both directions of a session draw from one per-session budget. Every chunk is charged
to the session's limiter (the normal one, or the LIMIT_SPEED one when the session is
blacklisted or downgraded) and to the limiter shared by all sessions; the caller then
waits the longer of the two delays before reading more from that side.
"""

from __future__ import annotations

from dataclasses import dataclass

MEBIBIT = 1024 * 1024
# How much unused allowance a limiter may bank, in seconds of its rate: enough to absorb
# scheduling jitter, small enough that a cap is visible within a fraction of a second.
BURST_SECONDS = 0.1
MIN_BURST_BITS = 64 * 1024 * 8
# A session reads at most this many seconds' worth of its current allowance per chunk,
# so a tiny cap means small, frequent chunks instead of one huge chunk and a long stall.
CHUNK_SECONDS = 0.25
MIN_CHUNK = 16 * 1024


class TokenBucket:
    """A limiter in "debt" style: consume first, then wait until the balance is back to 0.

    That fits a relay that only learns a chunk's size after reading it (splice returns
    how much it moved): the chunk is charged, and the delay it returns is how long the
    reader must pause so that the average stays at ``rate``.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate_bps: float, now: float) -> None:
        self._rate = rate_bps
        self._burst = max(rate_bps * BURST_SECONDS, MIN_BURST_BITS)
        self._tokens = self._burst
        self._last = now

    @property
    def rate(self) -> float:
        """Bits per second."""
        return self._rate

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = now

    def set_rate(self, rate_bps: float, now: float) -> None:
        """Change the rate from now on; debt already incurred is kept."""
        self._refill(now)
        self._rate = rate_bps
        self._burst = max(rate_bps * BURST_SECONDS, MIN_BURST_BITS)
        self._tokens = min(self._tokens, self._burst)

    def consume(self, bits: float, now: float) -> float:
        """Charge ``bits``; return the seconds to wait before the next chunk (0 if none)."""
        # _refill, inlined: this runs for every relayed chunk
        tokens = self._tokens
        elapsed = now - self._last
        if elapsed > 0:
            tokens += elapsed * self._rate
            if tokens > self._burst:
                tokens = self._burst
            self._last = now
        tokens -= bits
        self._tokens = tokens
        if tokens >= 0:
            return 0.0
        return -tokens / self._rate


@dataclass
class RelaySettings:
    """Run-time tunables; the console changes them (§9.2).

    Which take effect when: ``total_bandwidth`` at once (the shared limiter is updated),
    ``downgrade_start_check`` at once (read at every check), the others for new sessions.
    """

    total_bandwidth: float  # Mb/s
    single_bandwidth: float  # Mb/s
    limit_speed: float  # Mb/s
    downgrade_threshold_pct: int  # the official server keeps the ratio as whole percent
    downgrade_start_check: int  # seconds

    @staticmethod
    def threshold_pct(ratio: float) -> int:
        return int(ratio * 100)


class SessionBudget:
    """One relayed session's limiters, downgrade state and usage figures.

    ``consume`` is on the hot path (once per chunk); ``tick`` runs about once a second
    and does everything else: blacklist state, the downgrade rule, usage rates.
    """

    __slots__ = (
        "_bits_at_tick",
        "_last_tick",
        "_limited",
        "_normal",
        "_single_bps",
        "_start",
        "_threshold_pct",
        "_total",
        "blacklisted",
        "chunk",
        "current",
        "downgraded",
        "elapsed_ms",
        "highest",
        "total_bits",
    )

    def __init__(self, settings: RelaySettings, total: TokenBucket, now: float) -> None:
        # Read once: the official server applies these settings to new sessions only.
        self._single_bps = settings.single_bandwidth * MEBIBIT
        self._threshold_pct = settings.downgrade_threshold_pct
        self._normal = TokenBucket(self._single_bps, now)
        self._limited = TokenBucket(settings.limit_speed * MEBIBIT, now)
        self._total = total
        self._start = now
        self._last_tick = now
        self._bits_at_tick = 0
        self.blacklisted = False
        self.downgraded = False
        self.total_bits = 0
        self.elapsed_ms = 0  # 0 until the first full interval, as the console expects
        self.highest = 0  # bit/ms
        self.current = 0  # bit/ms
        self.chunk = 0
        self.refresh()

    @property
    def limited(self) -> bool:
        return self.blacklisted or self.downgraded

    def refresh(self) -> None:
        """Recompute the read chunk size from the current limiter rates."""
        session = self._limited if self.limited else self._normal
        rate = min(session.rate, self._total.rate)
        self.chunk = max(MIN_CHUNK, int(rate / 8 * CHUNK_SECONDS))

    def consume(self, nbytes: int, now: float) -> float:
        """Charge one forwarded chunk; return how long its reader must pause."""
        bits = nbytes * 8
        self.total_bits += bits
        session = self._limited if self.blacklisted or self.downgraded else self._normal
        wait = session.consume(bits, now)
        shared = self._total.consume(bits, now)
        return wait if wait > shared else shared

    def tick(self, now: float, blacklisted: bool, downgrade_start_check: int) -> None:
        """The once-a-second bookkeeping of §8.4."""
        interval_ms = int((now - self._last_tick) * 1000)
        if interval_ms <= 0:
            return
        self.blacklisted = blacklisted
        elapsed_ms = int((now - self._start) * 1000)
        if (
            not self.downgraded
            and elapsed_ms > downgrade_start_check * 1000
            # lifetime average above threshold x SINGLE_BANDWIDTH (in bit/ms)
            and self.total_bits * 100_000 > elapsed_ms * self._single_bps * self._threshold_pct
        ):
            self.downgraded = True
        self.current = (self.total_bits - self._bits_at_tick) // interval_ms
        self.highest = max(self.highest, self.current)
        self.elapsed_ms = elapsed_ms
        self._bits_at_tick = self.total_bits
        self._last_tick = now
        self.refresh()
