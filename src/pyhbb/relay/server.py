"""hbbr's asyncio adapters: listeners, first message, sessions (docs/protocol.md §8, §9).

Connections arrive on TCP port R or WebSocket port R+2. Each must send one
``RendezvousMessage{request_relay}`` within 30 s; :class:`Pairing` decides whether it
waits or pairs. A pair of plain TCP connections is handed to :class:`SplicePump`; a pair
with a WebSocket side runs the message bridge. One timer, once a second, enforces what
upstream checks "at most once per second": waiting deadlines, the blocklist (both sides
of a session and the waiters), blacklist and downgrade state, usage figures and the
30 s inactivity rule.

On R, a loopback connection whose first bytes are console text is an admin console
session (§9 "pyhbb decision"); anything else from loopback is a relay client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.net.conn_limits import ConnectionLimiter
from pyhbb.net.console_gate import CONSOLE_READ_LIMIT, CONSOLE_READ_TIMEOUT, Verdict, classify
from pyhbb.net.console_gate import parse_command as parse_console_command
from pyhbb.net.forwarded import client_addr
from pyhbb.net.sockets import BACKLOG, is_loopback, set_nodelay, tcp_listener
from pyhbb.relay import console
from pyhbb.relay.bandwidth import MEBIBIT, RelaySettings, SessionBudget, TokenBucket
from pyhbb.relay.console import UsageLine
from pyhbb.relay.lists import BLACKLIST_FILE, BLOCKLIST_FILE, IpList
from pyhbb.relay.pairing import Paired, Pairing, Rejected
from pyhbb.relay.splice_pump import SplicePump
from pyhbb.relay.ws_bridge import Activity, run_directions, tcp_to_ws, ws_to_tcp, ws_to_ws
from pyhbb.wire.addr_mangle import Addr, normalize, try_into_v4
from pyhbb.wire.framing import FrameError, split_first_frame
from pyhbb.wire.rendezvous_pb2 import RendezvousMessage

log = logging.getLogger("pyhbb.relay")

MAX_FIRST_MESSAGE = 64 * 1024  # §2.1 recommendation for hbbr's first frame
# Clients' WebSocket library refuses messages above 64 MiB, so nothing larger can be
# useful on a bridged session; the TCP side of a bridge uses the same frame limit.
MAX_WS_MESSAGE = 64 * 1024 * 1024
WS_MAX_QUEUE = 4  # frames buffered per WebSocket before reading pauses
WS_WRITE_LIMIT = 256 * 1024
WS_OPEN_TIMEOUT = 10.0  # upstream has none (§1.5)
RECV_SIZE = 64 * 1024
TICK = 1.0
ACCEPT_BATCH = 64
ACCEPT_PAUSE = 0.5  # after EMFILE & co., so a full fd table does not spin the loop


def fmt_addr(addr: Addr) -> str:
    ip, port = addr
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(eq=False)
class TcpConn:
    """A TCP relay client past its first message; ``leftover`` = bytes read after it."""

    sock: socket.socket
    addr: Addr
    leftover: bytes
    uuid: str = ""

    def drop(self) -> None:
        self.sock.close()


@dataclass(eq=False)
class WsConn:
    """A WebSocket relay client; its handler returns (closing it) when ``done`` is set."""

    ws: ServerConnection
    addr: Addr
    done: asyncio.Future[None]
    uuid: str = ""

    def drop(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


Conn = TcpConn | WsConn


@dataclass(eq=False)
class Session:
    """Two paired connections being relayed."""

    uuid: str
    first: Conn
    second: Conn
    budget: SessionBudget
    kind: str
    started: float
    last_active: float
    pump: SplicePump | None = None
    task: asyncio.Task[Any] | None = None
    activity: Activity = field(default_factory=Activity)
    last_activity: int = 0
    cut_reason: str = ""

    @property
    def key(self) -> str:
        """The usage key: ``IP:port`` of the second connection, as upstream."""
        return fmt_addr(self.second.addr)

    def moved(self) -> int:
        return self.pump.activity if self.pump is not None else self.activity.count

    def cut(self, reason: str) -> None:
        self.cut_reason = reason
        if self.pump is not None:
            self.pump.close(reason)
        elif self.task is not None:
            self.task.cancel()


def parse_request_relay(payload: bytes) -> tuple[str, str] | None:
    """``(uuid, licence_key)`` if ``payload`` is a RendezvousMessage with RequestRelay."""
    msg = RendezvousMessage()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        return None
    if msg.WhichOneof("union") != "request_relay":
        return None
    return msg.request_relay.uuid, msg.request_relay.licence_key


class RelayServer:
    """The running relay. Also the console's :class:`~pyhbb.relay.console.ConsoleTarget`."""

    def __init__(self, opts: HbbrOptions, licence_key: str) -> None:
        self.opts = opts
        self.licence_key = licence_key
        self._settings = RelaySettings(
            total_bandwidth=opts.total_bandwidth,
            single_bandwidth=opts.single_bandwidth,
            limit_speed=opts.limit_speed,
            downgrade_threshold_pct=RelaySettings.threshold_pct(opts.downgrade_threshold),
            downgrade_start_check=opts.downgrade_start_check,
        )
        self._blacklist = IpList.from_file(opts.workdir / BLACKLIST_FILE)
        self._blocklist = IpList.from_file(opts.workdir / BLOCKLIST_FILE)
        self.pairing: Pairing[Conn] = Pairing(
            licence_key, opts.pair_wait_timeout, opts.max_waiting, opts.max_waiting_per_ip
        )
        self.sessions: set[Session] = set()
        self._handshakes = ConnectionLimiter(
            opts.max_handshakes_per_ip, opts.max_handshakes, "hbbr (first message)"
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._total: TokenBucket | None = None
        self._tcp: socket.socket | None = None
        self._ws_sock: socket.socket | None = None
        self._ws_server: Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._accept_resume: asyncio.TimerHandle | None = None
        self.closed = False

    # -- ConsoleTarget -----------------------------------------------------------------

    @property
    def settings(self) -> RelaySettings:
        return self._settings

    @property
    def blacklist(self) -> IpList:
        return self._blacklist

    @property
    def blocklist(self) -> IpList:
        return self._blocklist

    def set_total_bandwidth(self, mbps: float) -> None:
        self._settings.total_bandwidth = mbps
        if self._total is not None and self._loop is not None:
            self._total.set_rate(mbps * MEBIBIT, self._loop.time())
        for s in self.sessions:
            s.budget.refresh()  # resize read chunks for the new rate now, not at the tick

    def usage(self) -> list[UsageLine]:
        return [
            UsageLine(
                s.key, s.budget.elapsed_ms, s.budget.total_bits, s.budget.highest, s.budget.current
            )
            for s in self.sessions
        ]

    # -- life cycle --------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    async def start(self) -> None:
        """Bind both ports and start serving; raises BindError if a port is taken."""
        self._loop = loop = asyncio.get_running_loop()
        self._total = TokenBucket(self._settings.total_bandwidth * MEBIBIT, loop.time())
        self._tcp = tcp_listener(self.opts.bind, self.opts.port)
        try:
            self._ws_sock = tcp_listener(self.opts.bind, self.opts.ws_port)
        except OSError:
            self._tcp.close()
            raise
        loop.add_reader(self._tcp.fileno(), self._on_accept)
        self._ws_server = await serve(
            self._ws_handler,
            sock=self._ws_sock,
            create_connection=self._ws_connection_class(),
            open_timeout=WS_OPEN_TIMEOUT,
            ping_interval=None,  # the 30 s inactivity rule ends dead sessions
            compression=None,
            max_size=MAX_WS_MESSAGE,
            max_queue=WS_MAX_QUEUE,
            write_limit=WS_WRITE_LIMIT,
            server_header=None,
            backlog=BACKLOG,  # asyncio would listen() again with its default of 100
        )
        self._tick_handle = loop.call_later(TICK, self._tick)
        log.info(
            "#blacklist(%s): %d, #blocklist(%s): %d",
            BLACKLIST_FILE,
            len(self._blacklist),
            BLOCKLIST_FILE,
            len(self._blocklist),
        )

    async def close(self) -> None:
        """Stop listening, end every session and waiter, release every descriptor."""
        if self.closed or self._loop is None:
            return
        self.closed = True
        loop = self._loop
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._accept_resume is not None:
            self._accept_resume.cancel()
        if self._tcp is not None:
            loop.remove_reader(self._tcp.fileno())
            self._tcp.close()
        for s in list(self.sessions):
            s.cut("server shutting down")
        for conn in self.pairing.clear():
            conn.drop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._ws_sock is not None:
            self._ws_sock.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- TCP port R --------------------------------------------------------------------

    def _on_accept(self) -> None:
        assert self._tcp is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self._tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept relay connections: %s; pausing", e.strerror)
                    self.loop.remove_reader(self._tcp.fileno())
                    self._accept_resume = self.loop.call_later(ACCEPT_PAUSE, self._resume_accept)
                return  # ECONNABORTED and the like: the client is gone
            addr = normalize(peer)
            if not self._handshakes.acquire(addr[0]):
                log.warning("too many connections in progress; refusing %s", fmt_addr(addr))
                sock.close()
                continue
            sock.setblocking(False)
            set_nodelay(sock)
            self._spawn(self._tcp_client(sock, addr))

    def _resume_accept(self) -> None:
        self._accept_resume = None
        if not self.closed and self._tcp is not None:
            self.loop.add_reader(self._tcp.fileno(), self._on_accept)

    async def _tcp_client(self, sock: socket.socket, addr: Addr) -> None:
        handed_over = False
        try:
            handed_over = await self._tcp_first_message(sock, addr)
        finally:
            self._handshakes.release(addr[0])
            if not handed_over:
                sock.close()

    async def _tcp_first_message(self, sock: socket.socket, addr: Addr) -> bool:
        """Read the first frame (or run a console command); True if ``sock`` was kept."""
        loop = self.loop
        ip = addr[0]
        loopback = is_loopback(ip)
        if not loopback and ip in self._blocklist:
            log.info("%s blocked", fmt_addr(addr))
            return False
        deadline = loop.time() + self.opts.first_message_timeout
        undecided = loopback  # may still be an admin console session
        raw = b""
        while True:
            timeout = deadline - loop.time()
            if undecided and raw:
                timeout = min(timeout, CONSOLE_READ_TIMEOUT)
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, RECV_SIZE), max(timeout, 0))
            except TimeoutError:
                data = None
            except OSError:
                return False
            if not data:  # timeout or end of stream
                if undecided and raw:
                    await self._console(sock, raw)
                elif data is None:
                    log.debug("%s sent no request within the time limit", fmt_addr(addr))
                return False
            raw += data
            if undecided:
                verdict = classify(raw[:CONSOLE_READ_LIMIT], console.COMMANDS)
                if verdict is Verdict.CONSOLE:
                    await self._console(sock, raw)
                    return False
                if verdict is Verdict.UNDECIDED:
                    continue
                undecided = False
                if ip in self._blocklist:
                    log.info("%s blocked", fmt_addr(addr))
                    return False
            try:
                split = split_first_frame(raw, MAX_FIRST_MESSAGE)
            except FrameError as e:
                log.debug("%s: %s", fmt_addr(addr), e)
                return False
            if split is not None:
                break
        # Keep the exact bytes that followed the first frame: in raw mode they are
        # forwarded verbatim, and they need not be frames at all (after pairing the
        # clients' own end-to-end stream follows), so they are never parsed here.
        payload, leftover = split
        request = parse_request_relay(payload)
        if request is None:
            log.debug("%s: first message is not RequestRelay", fmt_addr(addr))
            return False
        return self._arrive(TcpConn(sock, addr, leftover), *request)

    async def _console(self, sock: socket.socket, raw: bytes) -> None:
        args = parse_console_command(raw[:CONSOLE_READ_LIMIT])
        out = console.execute(args, self)
        log.info("console: %s", " ".join(args)[:200])
        if out:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self.loop.sock_sendall(sock, out.encode()), 10.0)

    # -- WebSocket port R+2 ------------------------------------------------------------

    def _ws_connection_class(self) -> type[ServerConnection]:
        server = self

        class RelayWsConnection(ServerConnection):
            """Applies the blocklist and the in-progress bounds before the handshake."""

            counted_ip: str | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                peer = transport.get_extra_info("peername")
                ip = try_into_v4(peer[0]) if peer else ""
                if ip in server._blocklist:
                    log.info("%s blocked (websocket)", ip)
                    transport.abort()  # type: ignore[attr-defined]
                elif not server._handshakes.acquire(ip):
                    log.warning("too many connections in progress; refusing %s", ip)
                    transport.abort()  # type: ignore[attr-defined]
                else:
                    self.counted_ip = ip

            def connection_lost(self, exc: Exception | None) -> None:
                server._ws_handshake_done(self)
                super().connection_lost(exc)

        return RelayWsConnection

    def _ws_handshake_done(self, ws: ServerConnection) -> None:
        ip = getattr(ws, "counted_ip", None)
        if ip is not None:
            ws.counted_ip = None  # type: ignore[attr-defined]
            self._handshakes.release(ip)

    async def _ws_handler(self, ws: ServerConnection) -> None:
        peer = normalize(ws.remote_address)
        addr = client_addr(
            peer, ws.request.headers if ws.request else {}, self.opts.trusted_proxies
        )
        try:
            message = await asyncio.wait_for(ws.recv(), self.opts.first_message_timeout)
        except (TimeoutError, ConnectionClosed):
            return
        finally:
            self._ws_handshake_done(ws)
        if addr[0] in self._blocklist:
            log.info("%s blocked (websocket, forwarded address)", fmt_addr(addr))
            return
        if not isinstance(message, bytes) or len(message) > MAX_FIRST_MESSAGE:
            return
        request = parse_request_relay(message)
        if request is None:
            log.debug("%s: first message is not RequestRelay", fmt_addr(addr))
            return
        conn = WsConn(ws, addr, self.loop.create_future())
        if not self._arrive(conn, *request):
            return
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait([conn.done, closed], return_when=asyncio.FIRST_COMPLETED)
            if not conn.done.done() and self.pairing.remove(conn, conn.uuid):
                log.info("relay request %s from %s: gave up waiting", conn.uuid, fmt_addr(addr))
                return
            await conn.done  # in a session: the bridge ends it
        finally:
            closed.cancel()

    # -- pairing and sessions ----------------------------------------------------------

    def _arrive(self, conn: Conn, uuid: str, licence_key: str) -> bool:
        """Offer a connection to the waiting table; False if it was refused."""
        decision = self.pairing.request(conn, conn.addr[0], uuid, licence_key, self.loop.time())
        if isinstance(decision, Rejected):
            level = logging.WARNING if "licence" in decision.reason else logging.INFO
            log.log(
                level, "relay request from %s refused: %s", fmt_addr(conn.addr), decision.reason
            )
            return False
        conn.uuid = uuid
        if isinstance(decision, Paired):
            self._start_session(uuid, decision.partner, conn)
        else:
            log.info("new relay request %s from %s", uuid, fmt_addr(conn.addr))
        return True

    def _start_session(self, uuid: str, first: Conn, second: Conn) -> None:
        assert self._total is not None
        now = self.loop.time()
        budget = SessionBudget(self._settings, self._total, now)
        kind = "tcp" if isinstance(first, TcpConn) else "ws"
        kind += "-tcp" if isinstance(second, TcpConn) else "-ws"
        session = Session(uuid, first, second, budget, kind, now, now)
        self.sessions.add(session)
        log.info(
            "relay request %s from %s paired with %s (%s)",
            uuid,
            fmt_addr(second.addr),
            fmt_addr(first.addr),
            kind,
        )
        if isinstance(first, TcpConn) and isinstance(second, TcpConn):
            session.pump = SplicePump(
                self.loop,
                first.sock,
                second.sock,
                budget,
                lambda reason: self._session_ended(session, reason),
                pending_a_to_b=first.leftover,
                pending_b_to_a=second.leftover,
            )
            session.pump.start()
        else:
            session.task = self._spawn(self._bridge(session))

    async def _bridge(self, session: Session) -> None:
        first, second, budget, act = session.first, session.second, session.budget, session.activity
        reason = "cut"
        try:
            if isinstance(first, WsConn) and isinstance(second, WsConn):
                reason = await run_directions(
                    ws_to_ws(first.ws, second.ws, budget, act),
                    ws_to_ws(second.ws, first.ws, budget, act),
                )
            else:
                tcp, ws = (first, second) if isinstance(first, TcpConn) else (second, first)
                assert isinstance(tcp, TcpConn) and isinstance(ws, WsConn)
                reason = await run_directions(
                    tcp_to_ws(tcp.sock, tcp.leftover, ws.ws, budget, act, MAX_WS_MESSAGE),
                    ws_to_tcp(ws.ws, tcp.sock, budget, act),
                )
        except asyncio.CancelledError:
            reason = session.cut_reason or "cancelled"
        except Exception as e:
            log.exception("relay %s failed", session.uuid)
            reason = f"error: {e}"
        finally:
            first.drop()
            second.drop()
            self._session_ended(session, reason)

    def _session_ended(self, session: Session, reason: str) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        if session.cut_reason:
            reason = session.cut_reason
        log.info(
            "relay %s of %s and %s closed (%s): %d bytes, %.1f s",
            session.uuid,
            fmt_addr(session.first.addr),
            fmt_addr(session.second.addr),
            reason,
            session.budget.total_bits // 8,
            self.loop.time() - session.started,
        )

    # -- once a second -----------------------------------------------------------------

    def _tick(self) -> None:
        loop = self.loop
        now = loop.time()
        try:
            for conn in self.pairing.expire(now):
                log.info(
                    "relay request %s from %s: no partner within %g s",
                    conn.uuid,
                    fmt_addr(conn.addr),
                    self.opts.pair_wait_timeout,
                )
                conn.drop()
            for uuid, conn, ip in self.pairing.waiting():
                if ip in self._blocklist and self.pairing.remove(conn, uuid):
                    log.info("%s blocked while waiting", fmt_addr(conn.addr))
                    conn.drop()
            start_check = self._settings.downgrade_start_check
            for s in list(self.sessions):
                ip1, ip2 = s.first.addr[0], s.second.addr[0]
                if ip1 in self._blocklist or ip2 in self._blocklist:
                    s.cut("blocked")
                    continue
                moved = s.moved()
                if moved != s.last_activity:
                    s.last_activity = moved
                    s.last_active = now
                elif now - s.last_active >= self.opts.idle_timeout:
                    s.cut("no traffic")
                    continue
                s.budget.tick(now, ip1 in self._blacklist or ip2 in self._blacklist, start_check)
        finally:
            if not self.closed:
                self._tick_handle = loop.call_later(TICK, self._tick)
