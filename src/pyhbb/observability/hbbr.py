"""hbbr's metrics and health checks, read from the relay core's counters and sessions.

The core counts its decisions in ``RelayCore.counts`` and ``refused``; :func:`hbbr_families`
adds up the live sessions (kinds, bytes, rates, limited ones) on the event loop at scrape
time (see pyhbb.observability.metrics). Nothing is counted per relayed chunk: the bytes
are the sessions' own bandwidth accounting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from prometheus_client.core import Metric

from pyhbb.observability.health import Check, CheckResult
from pyhbb.observability.metrics import counter, gauge
from pyhbb.relay.adapters.listener import Listener
from pyhbb.relay.bandwidth import MEBIBIT
from pyhbb.relay.core import RelayCore
from pyhbb.relay.pairing import Refusal

LISTENERS = ("tcp", "ws")  # port R, port R+2
SESSION_KINDS = ("tcp-tcp", "tcp-ws", "ws-tcp", "ws-ws")  # first (waited) - second
DROP_KINDS = ("closed_early", "bad_first_message", "first_message_timeout", "bad_frame")
REFUSALS = ("blocklist", "handshake_limit", *(r.name.lower() for r in Refusal))
ENDINGS = ("closed", "no_traffic", "blocked", "server_shutting_down")


def hbbr_families(core: RelayCore, listeners: Sequence[Listener]) -> list[Metric]:
    """Every hbbr family, read on the event loop (the sessions are the loop's)."""
    counts = core.counts
    active: Counter[str] = Counter()
    bits: Counter[str] = Counter()
    limited: Counter[str] = Counter()
    rate = 0  # bit/ms, as the sessions' usage figures
    for s in core.sessions:
        kind = s.kind
        budget = s.budget
        active[kind] += 1
        bits[kind] += budget.total_bits
        rate += budget.current
        if budget.blacklisted:
            limited["blacklist"] += 1
        elif budget.downgraded:
            limited["downgrade"] += 1
    settings = core.settings
    errors: dict[tuple[str, ...], int] = {(k,): counts["drop", k] for k in DROP_KINDS}
    errors["accept_failed",] = sum(listener.failures for listener in listeners)
    return [
        counter(
            "pyhbb_hbbr_connections",
            "Connections accepted, by listener (tcp: R, ws: R+2)",
            ["transport"],
            {(t,): counts["connection", t] for t in LISTENERS},
        ),
        counter(
            "pyhbb_hbbr_sessions",
            "Relay sessions started (two connections paired), by the sides' transports",
            ["transport"],
            {(k,): counts["session", k] for k in SESSION_KINDS},
        ),
        gauge(
            "pyhbb_hbbr_sessions_active",
            "Relay sessions running, by the sides' transports",
            ["transport"],
            {(k,): active[k] for k in SESSION_KINDS},
        ),
        counter(
            "pyhbb_hbbr_sessions_ended",
            "Relay sessions ended: closed by a side, or cut (no traffic, blocked, shutdown)",
            ["reason"],
            {(r,): counts["ended", r] for r in ENDINGS},
        ),
        counter(
            "pyhbb_hbbr_relayed_bytes",
            "Bytes relayed (both directions), by the sessions' transports",
            ["transport"],
            {(k,): (counts["relayed_bits", k] + bits[k]) // 8 for k in SESSION_KINDS},
        ),
        gauge(
            "pyhbb_hbbr_throughput_bits_per_second",
            "Relayed bits per second over the last second (the usage figures)",
            [],
            {(): rate * 1000},
        ),
        gauge(
            "pyhbb_hbbr_bandwidth_limit_bits_per_second",
            "Bandwidth caps: total (TOTAL_BANDWIDTH), per session (SINGLE_BANDWIDTH), per "
            "limited session (LIMIT_SPEED)",
            ["scope"],
            {
                ("total",): settings.total_bandwidth * MEBIBIT,
                ("session",): settings.single_bandwidth * MEBIBIT,
                ("limited",): settings.limit_speed * MEBIBIT,
            },
        ),
        gauge(
            "pyhbb_hbbr_sessions_limited",
            "Sessions held to LIMIT_SPEED: blacklisted IP, or downgraded for a high average",
            ["reason"],
            {(r,): limited[r] for r in ("blacklist", "downgrade")},
        ),
        counter(
            "pyhbb_hbbr_downgrades",
            "Sessions downgraded to LIMIT_SPEED (average above DOWNGRADE_THRESHOLD)",
            [],
            {(): counts["downgraded", "-"]},
        ),
        counter(
            "pyhbb_hbbr_refusals",
            "Connections refused: blocklist, handshake or waiting limits, licence key, uuid",
            ["reason"],
            {(r,): core.refused.get(r, 0) + counts["refused", r] for r in REFUSALS},
        ),
        counter(
            "pyhbb_hbbr_errors", "Connections dropped for bad input, by kind", ["kind"], errors
        ),
        gauge(
            "pyhbb_hbbr_table_entries",
            "Entries of hbbr's tables: connections before their first message, waiting for "
            "a partner, sessions",
            ["table"],
            {
                ("handshakes",): core.handshakes.count,
                ("waiting",): len(core.pairing),
                ("sessions",): len(core.sessions),
            },
        ),
    ]


def accepting_check(listeners: Sequence[Listener]) -> Check:
    """Both listening sockets accept (not closed, not paused for want of descriptors)."""

    def check(now: float) -> CheckResult:
        stopped = [listener.name for listener in listeners if not listener.accepting]
        if stopped:
            return CheckResult(False, "not accepting: " + ", ".join(stopped))
        return CheckResult(True, "accepting: " + ", ".join(lst.name for lst in listeners))

    return check
