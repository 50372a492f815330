"""Open-file descriptors: raise the soft limit at start, and say when they run out.

Every TCP or WebSocket client holds a descriptor. systemd starts services with a soft
limit of 1,024 (and a far higher hard limit), which would cap a server near 1,000 clients.
When descriptors do run out, uvloop's accept loop (libuv) accepts and closes the surplus
connections without telling anyone, and asyncio's reports every failed accept: both need
a throttled log line that names the limit to raise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource

from pyhbb.observability.throttle import worth_logging

log = logging.getLogger(__name__)

ADVICE = (
    "raise the open-files limit (systemd: LimitNOFILE=, docker: --ulimit nofile=, "
    "shell: ulimit -n) or lower MAX_CONNECTIONS"
)
HEADROOM = 8  # descriptors kept for the database, DNS look-ups and the like


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one; returns the soft limit now in
    force (or -1 for unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return -1 if soft == resource.RLIM_INFINITY else soft


def open_fds() -> int:
    """Descriptors open in this process now (one directory listing: start-up only)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class FdWatch:
    """Warns, throttled, when the descriptors a server holds reach its limit.

    ``baseline`` is what the process holds besides client connections (measured once at
    start-up); :meth:`check` is given the number of open client connections once a second,
    so no directory is listed on a busy server."""

    def __init__(self, name: str, soft_limit: int, baseline: int, advice: str = ADVICE) -> None:
        self.name = name
        self.soft_limit = soft_limit
        self.baseline = baseline
        self.advice = advice
        """What the admin can do, said with every warning."""
        self.exhausted = 0
        """Times the descriptors were found exhausted (checks, or failed accepts)."""

    @property
    def max_connections(self) -> int:
        """Client connections the limit leaves room for (-1: unlimited)."""
        if self.soft_limit < 0:
            return -1
        return max(0, self.soft_limit - self.baseline - HEADROOM)

    def describe(self, max_connections: int) -> str | None:
        """A start-up warning when the limit is below ``max_connections``, else None."""
        room = self.max_connections
        if room < 0 or room >= max_connections:
            return None
        return (
            f"{self.name}: the open-files limit ({self.soft_limit}) leaves room for about "
            f"{room} TCP/WebSocket connections, fewer than MAX_CONNECTIONS={max_connections}; "
            f"{self.advice}"
        )

    def check(self, connections: int) -> None:
        room = self.max_connections
        if room >= 0 and connections >= room:
            self.exhausted_now(f"{connections} connections open")

    def exhausted_now(self, detail: str) -> None:
        """Descriptors ran out (a check, or a failed accept reported by the loop)."""
        self.exhausted += 1
        if worth_logging(self.exhausted):
            log.warning(
                "%s: out of file descriptors (%s, open-files limit %d): new connections "
                "are refused; %s (%d times so far)",
                self.name,
                detail,
                self.soft_limit,
                self.advice,
                self.exhausted,
            )
