"""Open-connection accounting per source IP and in total, so one host cannot take all."""

from __future__ import annotations

import logging

from pyhbb.observability.throttle import worth_logging

log = logging.getLogger(__name__)


class ConnectionLimiter:
    """Counts open connections; :meth:`acquire` refuses past either bound."""

    def __init__(self, per_ip: int, total: int, name: str) -> None:
        self.per_ip = per_ip
        self.total = total
        self.name = name
        self.count = 0
        self._by_ip: dict[str, int] = {}
        self.refused = 0

    def acquire(self, ip: str, per_ip: bool = True) -> bool:
        """Count a new connection from ``ip``; ``per_ip=False`` for trusted proxies, which
        carry many clients."""
        n = self._by_ip.get(ip, 0)
        if (per_ip and n >= self.per_ip) or self.count >= self.total:
            self.refused += 1
            if worth_logging(self.refused):
                log.warning(
                    "%s: refusing connection from %s (%d open from it, %d in total; limits %d/%d)",
                    self.name,
                    ip,
                    n,
                    self.count,
                    self.per_ip,
                    self.total,
                )
            return False
        self._by_ip[ip] = n + 1
        self.count += 1
        return True

    def release(self, ip: str) -> None:
        n = self._by_ip.get(ip, 0)
        if n <= 1:
            self._by_ip.pop(ip, None)
        else:
            self._by_ip[ip] = n - 1
        if n:
            self.count -= 1
