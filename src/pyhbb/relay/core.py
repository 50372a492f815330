"""hbbr's decisions, without I/O (§8, §9.2).

Adapters report events with ``now`` (monotonic seconds) — a connection accepted, bytes
or a message before pairing, a deadline reached, a connection closed, a session ended,
the once-a-second tick — and perform the actions returned (:mod:`pyhbb.relay.actions`).
The core owns everything the relay decides: the handshake bounds, the blocklist and
blacklist, the first message (RequestRelay, licence key, console or protocol on
loopback), the waiting table, the bandwidth settings and limiters, the sessions with
their idle rule, downgrade state and usage figures. It is also the console's target.

Refusals that a client can cause at will are logged at the 1st, 2nd, 4th, 8th ...
occurrence of each kind, naming the option that would let more in.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from pyhbb.net.conn_limits import ConnectionLimiter
from pyhbb.net.hostport import format_addr
from pyhbb.observability.throttle import worth_logging
from pyhbb.relay import console
from pyhbb.relay.actions import (
    Action,
    Cut,
    Deadline,
    Drop,
    Reply,
    StartBridge,
    StartSplice,
    Wait,
)
from pyhbb.relay.bandwidth import MEBIBIT, RelaySettings, SessionBudget, TokenBucket
from pyhbb.relay.conns import Addr, Kind, Phase, RelayConn, Session
from pyhbb.relay.console import UsageLine
from pyhbb.relay.first_message import (
    MAX_FIRST_MESSAGE,
    ConsoleCommand,
    FirstFrame,
    TcpFirstMessage,
    parse_request_relay,
)
from pyhbb.relay.lists import IpList
from pyhbb.relay.pairing import Paired, Pairing, Refusal, Rejected

log = logging.getLogger("pyhbb.relay")

WS_OPEN_TIMEOUT = 10.0  # upstream has none (§1.5)
# Event-loop timers may fire a hair early (uvloop keeps time in whole milliseconds).
TIMER_SLACK = 0.002

# _drop's reasons → the "kind" the metrics count them under; the first-message reader's
# own reasons (frame errors, with sizes in them) all count as "bad_frame".
_DROP_KINDS = {
    "closed before its first message": "closed_early",
    "bad first message": "bad_first_message",
    "first message is not RequestRelay": "bad_first_message",
    "no first message in time": "first_message_timeout",
    "blocked": "refused",
    **{refusal.value: "refused" for refusal in Refusal},
}

_REFUSAL_HINTS = {
    Refusal.LICENCE_KEY: "clients must be configured with the key given by -k / KEY",
    Refusal.EMPTY_UUID: "not a RustDesk client",
    Refusal.WAITING_FULL: "raise MAX_WAITING",
    Refusal.WAITING_PER_IP: "raise MAX_WAITING_PER_IP",
}


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Time limits and table bounds (the official constants unless configured)."""

    pair_wait_timeout: float
    first_message_timeout: float
    idle_timeout: float
    max_waiting: int
    max_waiting_per_ip: int
    max_handshakes: int
    max_handshakes_per_ip: int
    ws_open_timeout: float = WS_OPEN_TIMEOUT


class RelayCore:
    """hbbr's rules (sans-IO). ``blacklist``/``blocklist`` are shared with the console."""

    def __init__(
        self,
        limits: RelayLimits,
        settings: RelaySettings,
        licence_key: str,
        blacklist: IpList,
        blocklist: IpList,
        now: float,
    ) -> None:
        self.limits = limits
        self.settings = settings
        self.blacklist = blacklist
        self.blocklist = blocklist
        self.pairing: Pairing[RelayConn] = Pairing(
            licence_key, limits.pair_wait_timeout, limits.max_waiting, limits.max_waiting_per_ip
        )
        self.handshakes = ConnectionLimiter(
            limits.max_handshakes_per_ip,
            limits.max_handshakes,
            "hbbr: connections before their first message (MAX_HANDSHAKES_PER_IP/MAX_HANDSHAKES)",
        )
        self.total = TokenBucket(settings.total_bandwidth * MEBIBIT, now)
        self.sessions: set[Session] = set()
        self.refused: dict[str, int] = {}
        """Refusals by kind, as counted for the throttled logs."""
        self.counts: Counter[tuple[str, str]] = Counter()
        """Events for the metrics: (event, kind) → count, from fixed sets of words;
        ("relayed_bits", session kind) adds up the sessions that ended."""
        self._first: dict[RelayConn, TcpFirstMessage] = {}

    # -- console target (§9.2) ------------------------------------------------------------

    def set_total_bandwidth(self, mbps: float, now: float) -> None:
        self.settings.total_bandwidth = mbps
        self.total.set_rate(mbps * MEBIBIT, now)
        for s in self.sessions:
            s.budget.refresh()  # resize read chunks for the new rate now, not at the tick

    def usage(self) -> list[UsageLine]:
        return [
            UsageLine(
                s.key, s.budget.elapsed_ms, s.budget.total_bits, s.budget.highest, s.budget.current
            )
            for s in self.sessions
        ]

    # -- before the first message (§8.1) ----------------------------------------------------

    def connected(self, conn: RelayConn, now: float) -> list[Action]:
        """A connection was accepted (before any byte is read)."""
        # On R a loopback connection may be the console: its blocklist check waits for
        # the first frame (below), like every attributed address's.
        self.counts["connection", conn.kind.value] += 1
        if not conn.loopback and conn.peer[0] in self.blocklist:
            return self._refuse_blocked(conn)
        if not self.handshakes.acquire(conn.peer[0]):
            self.counts["refused", "handshake_limit"] += 1
            return [Drop(conn, "too many connections in progress")]
        conn.phase = Phase.HANDSHAKE
        if conn.kind is Kind.TCP:
            self._first[conn] = TcpFirstMessage(conn.loopback)
            conn.deadline = now + self.limits.first_message_timeout
        else:
            conn.deadline = now + self.limits.ws_open_timeout
        return [Deadline(conn, conn.deadline)]

    def ws_opened(self, conn: RelayConn, addr: Addr, now: float) -> list[Action]:
        """The WebSocket handshake succeeded; ``addr`` is the attributed address (§1.5)."""
        if conn.phase is not Phase.HANDSHAKE:
            return []
        conn.addr = addr
        conn.deadline = now + self.limits.first_message_timeout
        return [Deadline(conn, conn.deadline)]

    def tcp_data(self, conn: RelayConn, data: bytes, now: float) -> list[Action]:
        """Bytes from a TCP connection that has not finished its first message."""
        reader = self._first.get(conn)
        if reader is None:
            return []
        outcome = reader.feed(data, now)
        if outcome is None:
            due = reader.console_due
            return [] if due is None else [Deadline(conn, min(conn.deadline, due))]
        if isinstance(outcome, ConsoleCommand):
            return self._console(conn, outcome, now)
        if isinstance(outcome, FirstFrame):
            # Kept verbatim: relayed first once paired; never parsed here (§8.3).
            conn.leftover = outcome.leftover
            return self._first_message(conn, outcome.payload, now)
        log.debug("%s: %s", format_addr(conn.addr), outcome.reason)
        return self._drop(conn, outcome.reason)

    def tcp_eof(self, conn: RelayConn, now: float) -> list[Action]:
        """End of stream from a TCP connection that has not finished its first message."""
        reader = self._first.get(conn)
        if reader is None:
            return []
        command = reader.end()
        if command is not None:  # printf 'h' | nc 127.0.0.1 21117
            return self._console(conn, command, now)
        return self._drop(conn, "closed before its first message")

    def ws_message(self, conn: RelayConn, message: bytes | None, now: float) -> list[Action]:
        """A WebSocket message (None: a text message) before the first one was accepted."""
        if conn.phase is not Phase.HANDSHAKE:
            return []
        if message is None or len(message) > MAX_FIRST_MESSAGE:
            log.debug("%s: first message is text or too large", format_addr(conn.addr))
            return self._drop(conn, "bad first message")
        return self._first_message(conn, message, now)

    def deadline(self, conn: RelayConn, now: float) -> list[Action]:
        """The time given by the last :class:`Deadline` for ``conn`` has come."""
        if conn.phase is not Phase.HANDSHAKE:
            return []
        reader = self._first.get(conn)
        due = conn.deadline
        if reader is not None and reader.console_due is not None:
            due = min(due, reader.console_due)
        if now + TIMER_SLACK < due:
            return [Deadline(conn, due)]
        command = reader.end() if reader is not None else None
        if command is not None:
            return self._console(conn, command, now)
        log.debug("%s sent no request within the time limit", format_addr(conn.addr))
        return self._drop(conn, "no first message in time")

    def _console(self, conn: RelayConn, command: ConsoleCommand, now: float) -> list[Action]:
        self._end_handshake(conn)
        conn.phase = Phase.CLOSED
        out = console.execute(command.args, self, now)
        log.info("console: %s", " ".join(command.args)[:200])
        return [Reply(conn, out)]

    def _first_message(self, conn: RelayConn, payload: bytes, now: float) -> list[Action]:
        ip = conn.addr[0]
        if ip in self.blocklist:  # a loopback or forwarded address, or added meanwhile
            return self._refuse_blocked(conn)
        request = parse_request_relay(payload)
        if request is None:
            log.debug("%s: first message is not RequestRelay", format_addr(conn.addr))
            return self._drop(conn, "first message is not RequestRelay")
        uuid, licence_key = request
        decision = self.pairing.request(conn, ip, uuid, licence_key, now)
        if isinstance(decision, Rejected):
            self._refuse(conn, decision.reason)
            return self._drop(conn, decision.reason.value)
        self._end_handshake(conn)
        conn.uuid = uuid
        if isinstance(decision, Paired):
            return self._pair(uuid, decision.partner, conn, now)
        conn.phase = Phase.WAITING
        log.info("new relay request %s from %s", uuid, format_addr(conn.addr))
        return [Wait(conn)]

    def _pair(self, uuid: str, first: RelayConn, second: RelayConn, now: float) -> list[Action]:
        session = Session(uuid, first, second, SessionBudget(self.settings, self.total, now), now)
        first.phase = second.phase = Phase.PAIRED
        self.sessions.add(session)
        self.counts["session", session.kind] += 1
        log.info(
            "relay request %s from %s paired with %s (%s)",
            uuid,
            format_addr(second.addr),
            format_addr(first.addr),
            session.kind,
        )
        return [StartSplice(session) if session.raw else StartBridge(session)]

    def _end_handshake(self, conn: RelayConn) -> None:
        if conn.phase is Phase.HANDSHAKE:
            self.handshakes.release(conn.peer[0])
            self._first.pop(conn, None)

    def _drop(self, conn: RelayConn, reason: str) -> list[Action]:
        self.counts["drop", _DROP_KINDS.get(reason, "bad_frame")] += 1
        self._end_handshake(conn)
        conn.phase = Phase.CLOSED
        return [Drop(conn, reason)]

    # -- refusals a client can repeat at will: throttled logs ------------------------------

    def _count(self, kind: str) -> int:
        n = self.refused.get(kind, 0) + 1
        self.refused[kind] = n
        return n

    def _refuse_blocked(self, conn: RelayConn) -> list[Action]:
        n = self._count("blocklist")
        if worth_logging(n):
            log.info(
                "%s is in the blocklist: connection refused (%d refused so far)",
                format_addr(conn.addr),
                n,
            )
        return self._drop(conn, "blocked")

    def _refuse(self, conn: RelayConn, why: Refusal) -> None:
        n = self._count(why.name.lower())
        if worth_logging(n):
            detail = why.value
            if why is Refusal.WAITING_FULL:
                detail += f" ({len(self.pairing)})"
            elif why is Refusal.WAITING_PER_IP:
                detail += f" ({self.pairing.waiting_from(conn.addr[0])})"
            log.log(
                logging.INFO if why is Refusal.EMPTY_UUID else logging.WARNING,
                "relay request from %s refused: %s; %s (%d refused so far)",
                format_addr(conn.addr),
                detail,
                _REFUSAL_HINTS[why],
                n,
            )

    # -- connections and sessions ending ----------------------------------------------------

    def closed(self, conn: RelayConn, now: float) -> None:
        """A connection before its session closed (the client left, or an I/O error)."""
        phase = conn.phase
        if phase is Phase.HANDSHAKE:
            self._end_handshake(conn)
        elif phase is Phase.WAITING and self.pairing.remove(conn, conn.uuid):
            log.info("relay request %s from %s: gave up waiting", conn.uuid, format_addr(conn.addr))
        if phase is not Phase.PAIRED:
            conn.phase = Phase.CLOSED

    def session_ended(self, session: Session, reason: str, now: float) -> None:
        """The session's mover closed both sides (either side ended, or after :class:`Cut`)."""
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.counts["relayed_bits", session.kind] += session.budget.total_bits
        self.counts["ended", session.ending.replace(" ", "_") or "closed"] += 1
        session.first.phase = session.second.phase = Phase.CLOSED
        log.info(
            "relay %s of %s and %s closed (%s): %d bytes, %.1f s",
            session.uuid,
            format_addr(session.first.addr),
            format_addr(session.second.addr),
            session.ending or reason,
            session.budget.total_bits // 8,
            now - session.started,
        )

    def _cut(self, session: Session, reason: str) -> Cut:
        session.ending = reason
        return Cut(session, reason)

    # -- once a second ----------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """What upstream checks at most once a second (§8.2-8.4): waiting deadlines, the
        blocklist on waiters and on both sides of every session, the 30 s inactivity rule,
        blacklist and downgrade state, usage figures."""
        actions: list[Action] = []
        for conn in self.pairing.expire(now):
            conn.phase = Phase.CLOSED
            log.info(
                "relay request %s from %s: no partner within %g s",
                conn.uuid,
                format_addr(conn.addr),
                self.limits.pair_wait_timeout,
            )
            actions.append(Drop(conn, "no partner"))
        for uuid, conn, ip in self.pairing.waiting():
            if ip in self.blocklist and self.pairing.remove(conn, uuid):
                conn.phase = Phase.CLOSED
                log.info("%s blocked while waiting", format_addr(conn.addr))
                actions.append(Drop(conn, "blocked"))
        start_check = self.settings.downgrade_start_check
        for s in self.sessions:
            if s.ending:
                continue
            ip1, ip2 = s.first.addr[0], s.second.addr[0]
            if ip1 in self.blocklist or ip2 in self.blocklist:
                actions.append(self._cut(s, "blocked"))
                continue
            moved = s.activity()
            if moved != s.last_activity:
                s.last_activity = moved
                s.last_active = now
            elif now - s.last_active >= self.limits.idle_timeout:
                actions.append(self._cut(s, "no traffic"))
                continue
            downgraded = s.budget.downgraded
            s.budget.tick(now, ip1 in self.blacklist or ip2 in self.blacklist, start_check)
            if s.budget.downgraded and not downgraded:
                self.counts["downgraded", "-"] += 1
        return actions

    def shutdown(self) -> list[Action]:
        """End every session and waiter."""
        actions: list[Action] = [
            self._cut(s, "server shutting down") for s in self.sessions if not s.ending
        ]
        for conn in self.pairing.clear():
            conn.phase = Phase.CLOSED
            actions.append(Drop(conn, "server shutting down"))
        return actions
