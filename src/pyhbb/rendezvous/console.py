"""The hbbs admin console on P-1 for loopback clients (docs/protocol.md §9.1).

Output formats follow the official server so existing scripts keep working; the upstream
bug where ``always-use-relay`` wiped the relay list is not reproduced. ``stats`` is ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pyhbb.net.hostport import split_list
from pyhbb.rendezvous.admin import CoreAdmin
from pyhbb.rendezvous.disabled_peers import Change
from pyhbb.rendezvous.rate_limits import BlockerEntry

HELP = (
    "relay-servers(rs) <separated by ,>\n"
    "reload-geo(rg)\n"
    "ip-blocker(ib) [<ip>|<number>] [-]\n"
    "ip-changes(ic) [<id>|<number>] [-]\n"
    "punch-requests(pr) [<number>] [-]\n"
    "always-use-relay(aur)\n"
    "test-geo(tg) <ip1> <ip2>\n"
    "stats: pyhbb counters and table sizes\n"
    "forget-peer <id>: pyhbb: drop the record of an ID deleted from the database\n"
    "disable-peer <id>: pyhbb: answer for an ID as for an offline peer\n"
    "enable-peer <id>: pyhbb: undo disable-peer\n"
    "disabled-peers [<number>]: pyhbb: how many IDs are disabled, and 10 of them\n"
)
COMMANDS = frozenset(
    {
        "h",
        "relay-servers",
        "rs",
        "reload-geo",
        "rg",
        "ip-blocker",
        "ib",
        "ip-changes",
        "ic",
        "punch-requests",
        "pr",
        "always-use-relay",
        "aur",
        "test-geo",
        "tg",
        "stats",
        "forget-peer",
        "disable-peer",
        "enable-peer",
        "disabled-peers",
    }
)

Resolver = Callable[[str], Awaitable[bool]]

UNSUPPORTED_IN_CLUSTER = "unsupported in cluster mode\n"
CHANGE_ANSWERS = {
    Change.CLUSTER_MODE: UNSUPPORTED_IN_CLUSTER,
    Change.BAD_ID: "invalid id\n",
}


def _page_index(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


class Console:
    """Executes one console command line: parses it, asks the core (through
    :class:`CoreAdmin`) and formats the answer. Reads no clock: the caller passes ``now``
    (the core's monotonic time) and ``wall`` (Unix time, for printed dates)."""

    def __init__(
        self,
        admin: CoreAdmin,
        resolver: Resolver,
        extra_stats: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.admin = admin
        self.resolver = resolver
        self.extra_stats = extra_stats

    async def execute(self, args: list[str], now: float, wall: float) -> str:
        cmd = args[0] if args else ""
        rest = args[1:]
        admin = self.admin
        if cmd == "h":
            return HELP
        if cmd in ("relay-servers", "rs"):
            return await self._relay_servers(rest)
        if cmd in ("ip-blocker", "ib"):
            return self._ip_blocker(rest, now)
        if cmd in ("ip-changes", "ic"):
            return self._ip_changes(rest, now)
        if cmd in ("punch-requests", "pr"):
            return self._punch_requests(rest, now, wall)
        if cmd in ("always-use-relay", "aur"):
            if rest:
                admin.set_always_use_relay(rest[0].upper() == "Y")
                return ""
            return f"ALWAYS_USE_RELAY: {'true' if admin.always_use_relay else 'false'}\n"
        if cmd in ("test-geo", "tg"):
            return f'"{admin.next_relay()}"\n' if rest else ""
        if cmd == "stats":
            return self._stats(now)
        if cmd == "forget-peer":
            return "forgotten\n" if rest and admin.forget_peer(rest[0]) else "unknown\n"
        if cmd in ("disable-peer", "enable-peer"):
            return self._disable(cmd, rest)
        if cmd == "disabled-peers":
            return self._disabled_peers(rest)
        return ""  # reload-geo and unknown commands: empty output, as upstream

    async def _relay_servers(self, rest: list[str]) -> str:
        if rest:
            entries = split_list(rest[0])
            self.admin.set_relay_servers([e for e in entries if await self.resolver(e)])
            return ""
        return "".join(f"{server}\n" for server in self.admin.relay_servers)

    def _ip_blocker(self, rest: list[str], now: float) -> str:
        entries = self.admin.blocked_ips(now)
        lines = [f"{len(entries)}"]

        def fmt(entry: BlockerEntry) -> str:
            return (
                f"{entry.count}/{int(now - entry.t_count)}s "
                f"{entry.id_count}/{int(now - entry.t_ids)}s"
            )

        start = _page_index(rest[0]) if rest else 0
        if start is not None:
            items = list(entries.items())[start : start + 10]
            lines += [f"{ip}: {fmt(entry)}" for ip, entry in items]
        else:
            found = self.admin.blocked_ip(rest[0])
            if found is not None:
                lines.append(fmt(found))
                if len(rest) > 1 and rest[1] == "-":
                    self.admin.unblock_ip(rest[0])
        return "".join(f"{line}\n" for line in lines)

    def _ip_changes(self, rest: list[str], now: float) -> str:
        entries = self.admin.ip_changes(now)
        lines = [f"{len(entries)}"]

        def fmt(ips: dict[str, int]) -> str:
            return "{" + ", ".join(f'"{ip}": {n}' for ip, n in ips.items()) + "}"

        start = _page_index(rest[0]) if rest else 0
        if start is not None and start <= 10_000_000:
            items = list(entries.items())[start : start + 10]
            lines += [f"{pid}: {int(now - e.t)}s {fmt(e.ips)}" for pid, e in items]
        else:
            found = entries.get(rest[0])
            if found is not None:
                lines.append(f"{int(now - found.t)}s {fmt(found.ips)}")
                if len(rest) > 1 and rest[1] == "-":
                    self.admin.forget_ip_changes(rest[0])
        return "".join(f"{line}\n" for line in lines)

    def _punch_requests(self, rest: list[str], now: float, wall: float) -> str:
        if rest and rest[0] == "-":
            self.admin.clear_punch_requests()
            return ""
        start = _page_index(rest[0]) if rest else 0
        size = _page_index(rest[1]) if len(rest) > 1 else 10
        start = start or 0
        size = size or 10
        out = []
        for t, e in self.admin.punch_requests()[start : start + size]:
            when = datetime.fromtimestamp(wall - (now - t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(f"{when} {e.from_ip} -> {e.to_id}@{e.to_ip}\n")
        return "".join(out)

    def _disable(self, cmd: str, rest: list[str]) -> str:
        if not rest or not rest[0]:
            return f"usage: {cmd} <id>\n"
        if cmd == "disable-peer":
            change = self.admin.disable_peer(rest[0])
            if change is Change.TABLE_FULL:
                return f"refused: {self.admin.disabled_limit} IDs are disabled already, the limit\n"
            return CHANGE_ANSWERS.get(change, "disabled\n")
        return CHANGE_ANSWERS.get(self.admin.enable_peer(rest[0]), "enabled\n")

    def _disabled_peers(self, rest: list[str]) -> str:
        """The count, then up to 10 IDs from the given position (as ``ib`` pages)."""
        if not self.admin.disabled_enforced:
            return UNSUPPORTED_IN_CLUSTER
        start = (_page_index(rest[0]) if rest else 0) or 0
        ids = self.admin.disabled_peers(start, 10)
        return "".join(f"{line}\n" for line in [str(self.admin.disabled_count()), *ids])

    def _stats(self, now: float) -> str:
        values = self.admin.table_sizes(now)
        if self.extra_stats is not None:
            values.update(self.extra_stats())
        values.update(self.admin.counters())
        return "".join(f"{k}: {v}\n" for k, v in values.items())
