"""The relay server list handed to peers, and its round-robin rotation (docs/protocol.md §6.16).

In cluster mode the list is every node's relays and the choice is the least loaded one
(docs/cluster.md §1.4): each pair must land on one concrete hbbr, chosen where A asked.
"""

from __future__ import annotations

from collections import Counter

DEFAULT_RELAY_PORT = 21117  # for entries given without a port


class RelayServers:
    """Configured relays, the subset the health check found reachable, and the rotation."""

    def __init__(self, servers: list[str] | None = None) -> None:
        self.configured: list[str] = []
        self.reachable: list[str] = []
        self._counter = 0
        self.set(servers or [])
        self._loads: Counter[str] | None = None
        """Cluster mode: each relay's pairs handed out lately, by every node."""
        self.given: Counter[str] = Counter()
        """Cluster mode: pairs this node handed to each relay since it was last asked."""

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

    def set_loads(self, relays: list[str], loads: dict[str, int]) -> None:
        """Cluster mode: the relays of every live node and their recent pairs; from now
        on :meth:`next` picks the least loaded one."""
        self.configured = list(relays)
        self.reachable = list(relays)
        self._loads = Counter({r: loads.get(r, 0) for r in relays})

    def take_given(self) -> dict[str, int]:
        """Pairs handed out per relay since the last call (cluster mode)."""
        given, self.given = dict(self.given), Counter()
        return given

    def next(self) -> str:
        servers = self.reachable
        loads = self._loads
        if loads is not None and servers:
            self._counter += 1
            n, turn = len(servers), self._counter

            def load(i: int) -> tuple[int, int]:
                return loads[servers[(i + turn) % n]], i

            # least loaded; ties go round, so equal relays share the pairs
            chosen = servers[(min(range(n), key=load) + turn) % n]
            loads[chosen] += 1
            self.given[chosen] += 1
            return chosen
        if not servers:
            return ""
        if len(servers) == 1:
            return servers[0]
        self._counter += 1
        return servers[self._counter % len(servers)]
