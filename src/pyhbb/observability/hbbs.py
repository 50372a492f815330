"""hbbs's metrics and health checks, read from the core's counters and tables.

The core counts its decisions in ``state.stats`` and ``state.outcomes``, the adapters
count connections in ``AdapterContext.counts``; :func:`hbbs_families` turns them into
metric families on the event loop at scrape time (see pyhbb.observability.metrics).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client.core import Metric

from pyhbb.observability.health import Check, CheckResult
from pyhbb.observability.metrics import counter, gauge
from pyhbb.rendezvous import relay_health
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.udp import UdpEndpoint
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.fair_budget import GLOBAL_LIMIT, PREFIX_LIMIT, SOURCE_LIMIT
from pyhbb.rendezvous.watchdog import WEDGED

TRANSPORTS = ("tcp", "ws", "nat")  # AdapterContext.counts' transports: P, P+2, P-1

# stats keys → the "kind" of pyhbb_hbbs_errors_total
ERROR_KINDS = {
    "udp_malformed": "malformed_datagram",
    "udp_ignored": "ignored_datagram",
    "oversized_fields": "oversized_field",
    "db_errors": "database",
    "dropped_loads": "load_queue_full",
    "dropped_load_waiters": "load_waiters_full",
    "udp_punch_sent_dropped": "udp_punch_answer_dropped",
}
# stats keys → the "reason" of pyhbb_hbbs_refusals_total (limits doing their job)
REFUSAL_REASONS = {
    "register_pk_too_frequent": "register_pk_rate",
    "register_pk_table_full": "peer_table_full",
    "register_pk_write_backlog_refused": "database_backlog",
    "sessions_refused": "session_limit",
    "legacy_updates_paced": "legacy_update_pacing",
    "heartbeat_lookup_queue_full": "take_back_queue_full",
}
BUDGETS = ("new_id", "lookup")  # Registration._budget_refused: register_pk_<budget>_<limit>_…


# The series exported from the start, at 0 (alerts and dashboards need them to exist);
# others appear when first counted.
KNOWN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "heartbeat": (("udp",), ("ok", "unknown_id", "ip_changed", "no_key")),
    "register_pk": (("udp",), ("ok", "uuid_mismatch", "too_frequent", "server_error")),
    "punch": (("tcp", "ws"), ("forwarded", "offline", "id_not_exist", "key_mismatch")),
    "relay": (("tcp", "ws"), ("forwarded", "not_in_memory", "unreachable")),
    "answer": (
        ("punch_answer", "local_address", "relay_answer"),
        ("forwarded", "requester_gone"),
    ),
}


def _by(outcomes: Counter[tuple[str, str, str]], what: str) -> dict[tuple[str, ...], int]:
    found: dict[tuple[str, ...], int] = {}
    transports, results = KNOWN.get(what, ((), ()))
    for transport in transports:
        for result in results:
            found[transport, result] = 0
    for (w, t, r), n in outcomes.items():
        if w == what:
            found[t, r] = n
    return found


def hbbs_families(
    core: RendezvousCore,
    executor: Executor,
    counts: Counter[tuple[str, str]],
    udp: UdpEndpoint | None,
) -> list[Metric]:
    """Every hbbs family, read on the event loop (the tables are the loop's)."""
    s = core.state
    stats = s.stats
    outcomes = s.outcomes
    now = executor.clock()
    heartbeats = _by(outcomes, "heartbeat")
    # UDP heartbeats count only their refusals where decided: the rest were accepted
    refused = sum(n for (transport, _), n in heartbeats.items() if transport == "udp")
    heartbeats["udp", "ok"] = stats["register_peer"] - refused
    errors: dict[tuple[str, ...], int] = {(kind,): stats[key] for key, kind in ERROR_KINDS.items()}
    errors["action_refused",] = executor.refused
    errors["oversized_datagram",] = udp.oversized if udp is not None else 0
    for (event, kind), n in counts.items():
        if event == "error":
            errors[kind,] = n
    refusals: dict[tuple[str, ...], int] = {
        (reason,): stats[key] for key, reason in REFUSAL_REASONS.items()
    }
    for budget in BUDGETS:
        for limit in (SOURCE_LIMIT, PREFIX_LIMIT, GLOBAL_LIMIT):
            refusals[f"{budget}_{limit}_budget",] = stats[f"register_pk_{budget}_{limit}_refused"]
        # heartbeats of peers read back after a restart (Registration._take_back)
        refusals[f"take_back_{limit}_budget",] = stats[f"heartbeat_take_back_{limit}_refused"]
    accepted: dict[tuple[str, ...], int] = {(t,): counts["accepted", t] for t in TRANSPORTS}
    sizes = core.admin.table_sizes(now)
    tables: dict[tuple[str, ...], int] = {
        ("peers",): sizes["peers_in_memory"],
        ("ip_blocker",): sizes["ip_blocker_entries"],
        ("requesters",): sizes["requesters_waiting"],
        ("pending_loads",): sizes["db_loads_pending"],
        ("punch_log",): sizes["punch_log_entries"],
        ("ip_changes",): len(s.ip_changes.entries),
        ("register_pk_counts",): len(s.reg_pk_counts),
        ("sessions",): len(s.sessions),
    }
    return [
        counter(
            "pyhbb_hbbs_heartbeats",
            "RegisterPeer heartbeats by transport and result (ok, or why the key is asked for)",
            ["transport", "result"],
            heartbeats,
        ),
        counter(
            "pyhbb_hbbs_register_pk",
            "RegisterPk answers by transport and result (ok once stored)",
            ["transport", "result"],
            _by(outcomes, "register_pk"),
        ),
        counter(
            "pyhbb_hbbs_registrations_stored",
            "Registrations written to the database: new peers and updates (key or IP)",
            ["kind"],
            {(k,): outcomes["stored", "-", k] for k in ("new", "update")},
        ),
        counter(
            "pyhbb_hbbs_punch_requests",
            "PunchHoleRequest decisions by transport and result",
            ["transport", "result"],
            _by(outcomes, "punch"),
        ),
        counter(
            "pyhbb_hbbs_relay_requests",
            "RequestRelay decisions by transport and result",
            ["transport", "result"],
            _by(outcomes, "relay"),
        ),
        counter(
            "pyhbb_hbbs_answers",
            "Answers of B passed on to the waiting A, or not (A gone)",
            ["kind", "result"],
            _by(outcomes, "answer"),
        ),
        counter(
            "pyhbb_hbbs_queries",
            "NAT tests, online queries and HTTP-tunnel requests",
            ["kind"],
            {
                ("nat_test",): stats["nat_tests"],
                ("online",): stats["online_queries"],
                ("http_proxy",): stats["http_proxy_requests"],
            },
        ),
        counter(
            "pyhbb_hbbs_refusals",
            "Requests refused by a limit (rate limits, fair budgets, table and session caps)",
            ["reason"],
            refusals,
        ),
        counter("pyhbb_hbbs_errors", "Errors and dropped input by kind", ["kind"], errors),
        counter(
            "pyhbb_hbbs_udp_datagrams",
            "Datagrams received on UDP P",
            [],
            {(): udp.received if udp is not None else 0},
        ),
        counter(
            "pyhbb_hbbs_connections",
            "Connections accepted, by listener (tcp: P, nat: P-1, ws: P+2)",
            ["transport"],
            accepted,
        ),
        counter(
            "pyhbb_hbbs_connections_refused",
            "Connections refused by the per-IP or total limit, by listener",
            ["transport"],
            {(t,): counts["refused", t] for t in TRANSPORTS},
        ),
        gauge(
            "pyhbb_hbbs_connections_open",
            "Open connections, by listener",
            ["transport"],
            {(t,): n - counts["closed", t] for (t,), n in accepted.items()},
        ),
        counter(
            "pyhbb_hbbs_secure_handshakes",
            "Secure-channel set-ups on TCP P: secure, plaintext (client skipped it), failed",
            ["result"],
            {(r,): counts["handshake", r] for r in ("secure", "plaintext", "failed")},
        ),
        gauge(
            "pyhbb_hbbs_peers_online",
            "Peers online (exact up to 50,000 in memory, else counted by the last sweep)",
            [],
            {(): sizes["peers_online"]},
        ),
        gauge("pyhbb_hbbs_table_entries", "Entries of hbbs's in-memory tables", ["table"], tables),
    ]


# -- health ------------------------------------------------------------------------------------


class UdpVerdict:
    """The UDP self-test's latest verdict (TEST_HBBS), for the health check."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.verdict = "not checked yet"

    def hear(self, verdict: str) -> None:
        self.verdict = verdict


def udp_check(verdict: UdpVerdict, transport: Callable[[], asyncio.BaseTransport | None]) -> Check:
    """UDP P is open and the self-test (when enabled) does not find it wedged; "busy"
    (probes lost under a flood while datagrams keep arriving) is still healthy."""

    def check(now: float) -> CheckResult:
        udp = transport()
        if udp is None or udp.is_closing():
            return CheckResult(False, "UDP socket closed")
        if not verdict.enabled:
            return CheckResult(True, "socket open; self-test off (TEST_HBBS=no)")
        if verdict.verdict == WEDGED:
            return CheckResult(False, "self-test: no answer and no datagram for 12 s")
        return CheckResult(True, f"self-test: {verdict.verdict}")

    return check


def listeners_check(servers: Sequence[tuple[str, asyncio.Server]]) -> Check:
    """Every listening socket still accepts (named e.g. "TCP 21116")."""

    def check(now: float) -> CheckResult:
        closed = [name for name, server in servers if not server.is_serving()]
        if closed:
            return CheckResult(False, "not listening: " + ", ".join(closed))
        return CheckResult(True, "listening: " + ", ".join(name for name, _ in servers))

    return check


def relay_probe(relays: Callable[[], Iterable[str]]) -> Callable[[], Awaitable[str]]:
    """A TCP connection to each relay handed to clients: succeeds when one answers."""

    async def probe() -> str:
        servers = list(relays())
        results = await asyncio.gather(*(relay_health.reachable(r) for r in servers))
        up = [r for r, ok in zip(servers, results, strict=True) if ok]
        if not up:
            raise ConnectionError("no relay reachable: " + ", ".join(servers))
        down = [r for r in servers if r not in up]
        return "reachable: " + ", ".join(up) + (f"; unreachable: {', '.join(down)}" if down else "")

    return probe
