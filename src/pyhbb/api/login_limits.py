"""Login rate limits per IP and per user name (token buckets, time injected).

Per IP every attempt costs a token (one address guessing many names); per user name
only failures do (someone guessing one account's password from many addresses), so a
user typing the right password is never slowed by their own successes. Once a bucket
is empty the attempt is refused before any password is checked, even a right one:
otherwise the limit would not limit. Both tables are bounded: the least recently
touched entries are dropped first, which only ever forgets a penalty.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    burst: int
    per_second: float


class _Buckets:
    def __init__(self, spec: Bucket, max_entries: int) -> None:
        self.spec = spec
        self.max_entries = max_entries
        self._tokens: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        entry = self._tokens.get(key)
        if entry is None:
            return float(self.spec.burst)
        tokens, at = entry
        return min(float(self.spec.burst), tokens + max(0.0, now - at) * self.spec.per_second)

    def wait(self, key: str, now: float) -> float:
        """Seconds until one token is available (0 when available now)."""
        level = self._level(key, now)
        if level >= 1.0:
            return 0.0
        return (1.0 - level) / self.spec.per_second

    def take(self, key: str, now: float) -> None:
        self._tokens[key] = (max(0.0, self._level(key, now) - 1.0), now)
        self._tokens.move_to_end(key)
        while len(self._tokens) > self.max_entries:
            self._tokens.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tokens)


class LoginLimiter:
    """Decides whether a login attempt may be checked at all."""

    def __init__(
        self,
        per_ip: Bucket = Bucket(20, 1 / 3),
        per_user: Bucket = Bucket(10, 1 / 30),
        max_entries: int = 100_000,
    ) -> None:
        self.ips = _Buckets(per_ip, max_entries)
        self.users = _Buckets(per_user, max_entries)

    def admit(self, ip: str, name: str, now: float) -> float:
        """0 if the attempt may proceed (and charge the IP), else seconds to wait."""
        wait = max(self.ips.wait(ip, now), self.users.wait(name.lower(), now))
        if wait > 0:
            return wait
        self.ips.take(ip, now)
        return 0.0

    def failed(self, name: str, now: float) -> None:
        self.users.take(name.lower(), now)
