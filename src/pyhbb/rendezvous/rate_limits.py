"""Rate limits and bounded logs of hbbs (docs/protocol.md §11), all with injected time.

Whole-second truncation as upstream: "more than N whole seconds" means elapsed >= N + 1.
Unlike upstream every table here is bounded, and stays O(1) per packet when full: a full
table forgets its oldest entry (:class:`BoundedTable`), and expired entries are swept by
the housekeeping timer, never on a client's request.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.bounded_table import BoundedTable

log = logging.getLogger(__name__)


def _secs(elapsed: float) -> int:
    return int(elapsed)


def blocker_key(ip: str) -> str:
    """IPv6 clients are limited per /64: one host or site usually owns the whole prefix."""
    if ":" not in ip:
        return ip
    try:
        return str(ipaddress.IPv6Network((ip.split("%", 1)[0], 64), strict=False))
    except ValueError:
        return ip


def prefix_key(ip: str) -> str:
    """The source prefix that shares a budget: IPv4 /24, IPv6 /56 (the defaults of BIND's
    response-rate limiting: a /24 is the smallest block routed on the Internet, a /56 what
    ISPs commonly delegate to one customer site)."""
    if ":" not in ip:
        return ip[: ip.rfind(".")]
    try:
        return str(ipaddress.IPv6Network((ip.split("%", 1)[0], 56), strict=False))
    except ValueError:
        return ip


# One source IP's RegisterPk history: (count, t_count, t_ids, ids). Most IPs register one
# id, so ``ids`` is None or a single string until a second id appears.
RawEntry = tuple[int, float, float, "str | frozenset[str] | None"]

# As the blocker stores it: packed into bytes (the header, then the ids joined by NUL, which
# id_format_ok keeps out of ids). A flood or a burst of registrations puts up to
# ``max_entries`` of them in memory, and a fresh tuple in a dict makes the GC walk every
# entry of it at its next collection, young ones included: 8-40 ms pauses at 40,000 entries
# while 2,000 new sources a second were recorded (bench/RESULTS.md, flood). Bytes are never
# tracked, so neither is the table.
_HEADER = struct.Struct("<IddI")  # count, t_count, t_ids, number of ids
_SEP = "\0"


def pack_entry(count: int, t_count: float, t_ids: float, ids: str | frozenset[str] | None) -> bytes:
    """What the blocker stores for ``(count, t_count, t_ids, ids)``."""
    if ids is None:
        return _HEADER.pack(count, t_count, t_ids, 0)
    if isinstance(ids, str):
        return _HEADER.pack(count, t_count, t_ids, 1) + ids.encode()
    return _HEADER.pack(count, t_count, t_ids, len(ids)) + _SEP.join(ids).encode()


def unpack_entry(raw: bytes) -> RawEntry:
    """The tuple a packed blocker entry holds."""
    count, t_count, t_ids, n = _HEADER.unpack_from(raw)
    if n == 0:
        return count, t_count, t_ids, None
    text = raw[_HEADER.size :].decode()
    return count, t_count, t_ids, text if n == 1 else frozenset(text.split(_SEP))


class BlockerEntry(NamedTuple):
    """A blocker entry as the console and tests read it (built from the stored tuple)."""

    count: int  # type: ignore[assignment]  # shadows tuple.count, which nobody calls here
    t_count: float
    t_ids: float
    id_set: str | frozenset[str] | None = None

    @property
    def ids(self) -> set[str]:
        ids = self.id_set
        return set() if ids is None else {ids} if isinstance(ids, str) else set(ids)

    @property
    def id_count(self) -> int:
        return _id_count(self.id_set)


def _id_count(ids: str | frozenset[str] | None) -> int:
    return 0 if ids is None else 1 if isinstance(ids, str) else len(ids)


def _has(ids: str | frozenset[str] | None, peer_id: str) -> bool:
    return ids == peer_id if not isinstance(ids, frozenset) else peer_id in ids


def _with_id(ids: str | frozenset[str] | None, peer_id: str) -> str | frozenset[str]:
    if ids is None:
        return peer_id
    if isinstance(ids, str):
        return ids if ids == peer_id else frozenset((ids, peer_id))
    return ids | {peer_id}


@dataclass
class BlockerLimits:
    """RegisterPk limits per source IP (upstream: 30 per 60 s, 300 ids per day)."""

    burst: int = 30
    window: int = 60
    max_ids: int = 300
    ids_window: int = 86_400
    max_entries: int = 250_000
    """Sources remembered at once: ~195 bytes each with the key (bench/RESULTS.md, flood)."""


class IpBlocker:
    """Upstream IP_BLOCKER: RegisterPk bursts and distinct ids per IP.

    When full, a new source pushes out the least recently swept entry (that source starts
    afresh if it comes back) rather than being refused: a flood of forged sources must not
    lock genuine new sources out, and the other budgets (per prefix, per id, global) still
    bound what a forgotten source can do."""

    def __init__(self, limits: BlockerLimits | None = None) -> None:
        self.limits = limits or BlockerLimits()
        self.entries: BoundedTable[str, bytes] = BoundedTable(self.limits.max_entries)
        """Packed entries (:func:`unpack_entry`), by :func:`blocker_key`."""

    def allow(self, ip: str, peer_id: str, now: float) -> bool:
        lim = self.limits
        key = blocker_key(ip)
        entries = self.entries
        raw = entries.get(key)
        if raw is None:
            evicted = entries.evicted
            entries[key] = pack_entry(0, now, now, None)
            if entries.evicted != evicted and worth_logging(entries.evicted):
                log.warning(
                    "IP blocker full (%d source addresses in the last minutes): forgetting "
                    "the oldest to make room; %d forgotten so far (a flood from forged or "
                    "many new sources?)",
                    len(entries),
                    entries.evicted,
                )
            return True
        count, t_count, t_ids, ids = unpack_entry(raw)
        if _secs(now - t_count) > lim.window:
            count = 0
        elif count > lim.burst:
            return False
        count += 1
        is_new = not _has(ids, peer_id)
        if _secs(now - t_ids) > lim.ids_window:
            ids = None
        elif _id_count(ids) > lim.max_ids and is_new:
            entries[key] = pack_entry(count, now, t_ids, ids)  # the attempt still counts
            return False
        entries[key] = pack_entry(count, now, now, _with_id(ids, peer_id) if is_new else ids)
        return True

    def entry(self, ip: str) -> BlockerEntry | None:
        """The entry of ``ip`` (its /64 for IPv6), for the console and tests."""
        raw = self.entries.get(blocker_key(ip))
        return None if raw is None else BlockerEntry(*unpack_entry(raw))

    def _expired(self, now: float) -> Callable[[bytes], bool]:
        """Both windows over (upstream), or the burst window over for an IP that
        registered at most one id (ours): the distinct-id rule is for IPs that register
        many ids, and keeping a day-long entry for each of a million single-peer IPs
        would cost more than the peers themselves. Such an IP can gain one id per 61 s."""
        lim = self.limits
        header = _HEADER.unpack_from

        def expired(raw: bytes) -> bool:
            _, t_count, t_ids, n = header(raw)
            return _secs(now - t_count) > lim.window and (
                n <= 1 or _secs(now - t_ids) > lim.ids_window
            )

        return expired

    def prune(self, now: float) -> None:
        """Drop every expired entry (console ``ib``)."""
        self.entries.remove_where(self._expired(now))

    def prune_step(self, now: float, budget: int) -> int:
        """The same for at most ``budget`` entries (housekeeping)."""
        return self.entries.sweep(budget, self._expired(now))


@dataclass
class IpChangeEntry:
    t: float
    ips: dict[str, int] = field(default_factory=dict)


class IpChanges:
    """Upstream IP_CHANGES: which IPs an id registered from recently (console ``ic``).
    Informational only: when full, the oldest entry makes room."""

    WINDOW = 180
    MAX_ENTRIES = 100_000
    MAX_IPS = 64

    def __init__(self) -> None:
        self.entries: BoundedTable[str, IpChangeEntry] = BoundedTable(self.MAX_ENTRIES)

    def record(self, peer_id: str, ip: str, now: float) -> None:
        entry = self.entries.get(peer_id)
        if entry is None or _secs(now - entry.t) > self.WINDOW:
            self.entries[peer_id] = IpChangeEntry(now, {ip: 1})
            return
        if ip in entry.ips or len(entry.ips) < self.MAX_IPS:
            entry.ips[ip] = entry.ips.get(ip, 0) + 1

    def prune(self, now: float) -> None:
        """Console rule: drop entries older than 360 s or with at most one IP."""
        self.entries.remove_where(lambda e: _secs(now - e.t) > 2 * self.WINDOW or len(e.ips) <= 1)

    def prune_step(self, now: float, budget: int) -> int:
        """Drop entries older than 360 s among at most ``budget`` (housekeeping)."""
        return self.entries.sweep(budget, lambda e: _secs(now - e.t) > 2 * self.WINDOW)


@dataclass(frozen=True, slots=True)
class PunchEntry:
    from_ip: str
    to_ip: str
    to_id: str


class PunchLog:
    """Upstream PUNCH_REQS: recent punch requests that reached an online target, capped."""

    DUP_SCAN = 30
    DUP_WINDOW = 60

    def __init__(self, cap: int = 10_000) -> None:
        self.entries: deque[tuple[float, PunchEntry]] = deque(maxlen=cap)

    def record(self, from_ip: str, to_ip: str, to_id: str, now: float) -> None:
        for scanned, (t, e) in enumerate(reversed(self.entries)):
            if scanned >= self.DUP_SCAN:
                break
            if e.from_ip == from_ip and e.to_id == to_id:
                if _secs(now - t) < self.DUP_WINDOW:
                    return
                break
        self.entries.append((now, PunchEntry(from_ip, to_ip, to_id)))

    def clear(self) -> None:
        self.entries.clear()


class TokenBucket:
    """``rate`` events per second after a burst of ``burst`` (time injected)."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        if now > self._last:  # a clock that never runs backwards, whatever the caller passes
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def empty(self, now: float) -> bool:
        """Would :meth:`take` refuse at ``now``? (Takes nothing.)"""
        return self._tokens + max(0.0, now - self._last) * self.rate < 1.0


def reg_pk_allowed(count: int, last: float, now: float) -> tuple[bool, int]:
    """Per-id RegisterPk limit (§6.4 step 6): returns (allowed, new counter)."""
    if _secs(now - last) > 6:
        count = 0
    elif count > 2:
        return False, count
    return True, count + 1
