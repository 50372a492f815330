"""The relay server list handed to peers, and its round-robin rotation (docs/protocol.md §6.16)."""

from __future__ import annotations

DEFAULT_RELAY_PORT = 21117  # for entries given without a port


class RelayServers:
    """Configured relays, the subset the health check found reachable, and the rotation."""

    def __init__(self, servers: list[str] | None = None) -> None:
        self.configured: list[str] = []
        self.reachable: list[str] = []
        self._counter = 0
        self.set(servers or [])

    def set(self, servers: list[str]) -> None:
        self.configured = list(servers)
        self.reachable = list(servers)

    def set_reachable(self, reachable: list[str]) -> None:
        """Result of one health check; an empty result keeps the previous choice (§6.16)."""
        if reachable:
            self.reachable = [s for s in self.configured if s in reachable]

    @property
    def needs_health_check(self) -> bool:
        return len(self.configured) > 1

    def next(self) -> str:
        servers = self.reachable
        if not servers:
            return ""
        if len(servers) == 1:
            return servers[0]
        self._counter += 1
        return servers[self._counter % len(servers)]
