"""Operations on the core from outside the protocol: the admin console, the relay health
check and the periodic summary (docs/protocol.md §6.16, §9.1).

Whatever changes the core's state goes through a method here (no caller writes a table),
and the tables are handed out as read-only views. Time is always the caller's ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from pyhbb.rendezvous.disabled_peers import Change
from pyhbb.rendezvous.rate_limits import (
    BlockerEntry,
    IpChangeEntry,
    PunchEntry,
    blocker_key,
    unpack_entry,
)
from pyhbb.rendezvous.state import MAX_ID_BYTES, CoreState

log = logging.getLogger("pyhbb.rendezvous")


class CoreAdmin:
    """Admin queries and commands on one core's state."""

    def __init__(self, state: CoreState) -> None:
        self.s = state

    # -- relays (§6.16) -----------------------------------------------------------------------

    @property
    def relay_servers(self) -> list[str]:
        """The relays handed out now (the configured ones the health check reached)."""
        return list(self.s.relays.reachable)

    def set_relay_servers(self, servers: list[str]) -> None:
        """Replace the configured relays (the caller has dropped unresolvable entries)."""
        self.s.relays.set(servers)
        log.info("relay servers set to %s", ",".join(servers) or "none")

    def next_relay(self) -> str:
        """The relay the next punch request would get; advances the rotation (``test-geo``)."""
        return self.s.relays.next()

    def relays_to_check(self) -> list[str]:
        """Relays the health check should probe: all of them, when there is a choice."""
        relays = self.s.relays
        return list(relays.configured) if relays.needs_health_check else []

    def set_cluster_relays(self, relays: list[str], loads: dict[str, int]) -> None:
        """Cluster mode: every live node's reachable relays with their recent pairs; the
        least loaded is handed out from now on (docs/cluster.md §1.4)."""
        if relays != self.s.relays.configured:
            log.info("cluster relays: %s", ",".join(relays) or "none")
        self.s.relays.set_loads(relays, loads)

    def take_relay_pairs(self) -> dict[str, int]:
        """Cluster mode: pairs handed to each relay since the last call."""
        return self.s.relays.take_given()

    # -- cluster mode ---------------------------------------------------------------------------

    def doubt_ownership(self) -> int:
        """The bus was unreachable: check every held peer against the directory at its
        next use (an evict may have been lost). Returns how many."""
        n = self.s.doubt_ownership()
        log.info("bus reconnected: %d held peers will be checked against the directory", n)
        return n

    def relays_checked(self, reachable: list[str]) -> None:
        """Result of one health check (an empty result keeps the previous choice)."""
        self.s.relays.set_reachable(reachable)

    # -- always-use-relay ---------------------------------------------------------------------

    @property
    def always_use_relay(self) -> bool:
        return self.s.settings.always_use_relay

    def set_always_use_relay(self, on: bool) -> None:
        if on != self.s.settings.always_use_relay:
            log.info("ALWAYS_USE_RELAY set to %s", "Y" if on else "N")
        self.s.settings.always_use_relay = on

    # -- rate-limit tables (§11) ----------------------------------------------------------------

    def blocked_ips(self, now: float) -> Mapping[str, BlockerEntry]:
        """The IP blocker's entries, expired ones dropped first (as upstream's ``ib``)."""
        self.s.blocker.prune(now)
        return MappingProxyType(
            {ip: BlockerEntry(*unpack_entry(raw)) for ip, raw in self.s.blocker.entries.items()}
        )

    def blocked_ip(self, ip: str) -> BlockerEntry | None:
        return self.s.blocker.entry(ip)

    def unblock_ip(self, ip: str) -> None:
        if self.s.blocker.entries.pop(blocker_key(ip), None) is not None:
            log.info("IP blocker entry of %s removed by the console", ip)

    def ip_changes(self, now: float) -> Mapping[str, IpChangeEntry]:
        """Recent IP changes per id, old and single-IP entries dropped first (``ic``)."""
        self.s.ip_changes.prune(now)
        return MappingProxyType(self.s.ip_changes.entries)

    def forget_ip_changes(self, peer_id: str) -> None:
        self.s.ip_changes.entries.pop(peer_id, None)

    def punch_requests(self) -> Sequence[tuple[float, PunchEntry]]:
        """Recent punch requests, oldest first, with the ``now`` they were recorded at."""
        return tuple(self.s.punch_log.entries)

    def clear_punch_requests(self) -> None:
        self.s.punch_log.clear()

    # -- peers ----------------------------------------------------------------------------------

    def forget_peer(self, peer_id: str) -> bool:
        """Drop the in-memory record of an ID whose row was deleted (the web console does).

        Without this a heartbeat from the address in memory would still be accepted and
        the ID would never be stored again; now the next RegisterPeer asks for the key,
        and the RegisterPk that follows finds no row and registers the ID anew.
        """
        if self.s.disabled.discard(peer_id):  # a new row with this ID is a new device
            log.info("deleted peer %s is no longer disabled", peer_id)
        if peer_id not in self.s.peers:
            return False
        self.s.peers.remove(peer_id)
        log.info("record of peer %s forgotten by the console", peer_id)
        return True

    # -- disabled peers (disabled_peers.py) -----------------------------------------------------

    def disable_peer(self, peer_id: str) -> Change:
        """Answer for ``peer_id`` as for an offline peer from now on (the web console wrote
        ``status = 0`` into its row)."""
        s = self.s
        if s.settings.node_name:
            return Change.CLUSTER_MODE
        if not peer_id or len(peer_id.encode()) > MAX_ID_BYTES:
            return Change.BAD_ID
        if peer_id in s.disabled:
            return Change.DONE
        if not s.disabled.add(peer_id):
            log.warning(
                "disabling peer %s refused: %d IDs are disabled already, the most hbbs "
                "enforces; enable or delete some in the web console first",
                peer_id,
                s.disabled.limit,
            )
            return Change.TABLE_FULL
        log.info("peer %s disabled by the console: it is answered as offline", peer_id)
        return Change.DONE

    def enable_peer(self, peer_id: str) -> Change:
        """Undo :meth:`disable_peer` (enabling an ID that is not disabled changes nothing)."""
        if self.s.settings.node_name:
            return Change.CLUSTER_MODE
        if self.s.disabled.discard(peer_id):
            log.info("peer %s enabled again by the console", peer_id)
        return Change.DONE

    def load_disabled(self, peer_ids: list[str], total: int) -> int:
        """At start: the IDs the database marks disabled (``total`` of them, of which
        ``peer_ids`` were read). Returns how many are enforced."""
        n = self.s.disabled.add_all(peer_ids)
        if n < total:
            log.warning(
                "%d IDs are disabled in the database, more than the %d hbbs enforces: "
                "the other %d stay reachable; delete the devices you no longer need",
                total,
                self.s.disabled.limit,
                total - n,
            )
        elif n:
            log.info("%d disabled IDs are answered as offline", n)
        return n

    @property
    def disabled_enforced(self) -> bool:
        """Whether disabling an ID has an effect here (not in cluster mode)."""
        return not self.s.settings.node_name

    @property
    def disabled_limit(self) -> int:
        return self.s.disabled.limit

    def disabled_count(self) -> int:
        return len(self.s.disabled)

    def disabled_peers(self, start: int, count: int) -> list[str]:
        """Disabled IDs in the order they were disabled (console listing)."""
        return self.s.disabled.page(start, count)

    # -- statistics -----------------------------------------------------------------------------

    def table_sizes(self, now: float) -> dict[str, int]:
        s = self.s
        return {
            "peers_in_memory": len(s.peers),
            "peers_online": s.peers.online_count(now),
            "requesters_waiting": len(s.requesters),
            "db_loads_pending": s.pending_loads,
            "ip_blocker_entries": len(s.blocker.entries),
            "punch_log_entries": len(s.punch_log.entries),
            "disabled_peers": len(s.disabled),
        }

    def counters(self) -> dict[str, int]:
        """The core's event counters, by name."""
        return dict(sorted(self.s.stats.items()))
