"""The running hbbr: both listeners and the once-a-second tick (§8, §9).

Connections arrive on TCP port R or WebSocket port R+2 and become client protocols
(:mod:`pyhbb.relay.adapters`) that report to :class:`~pyhbb.relay.core.RelayCore`, which
decides everything; the executor performs its actions. Every second the core checks
what upstream checks "at most once per second" (waiting deadlines, the blocklist,
blacklist and downgrade state, usage figures, the 30 s inactivity rule).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from pyhbb.config.hbbr import HbbrOptions
from pyhbb.net.fd_limit import FdWatch, open_fds, raise_fd_limit
from pyhbb.net.sockets import tcp_listener
from pyhbb.observability.hbbr import accepting_check, hbbr_families
from pyhbb.observability.metrics import Monitoring
from pyhbb.relay.adapters.executor import Executor
from pyhbb.relay.adapters.listener import Listener
from pyhbb.relay.adapters.tcp import TcpClient
from pyhbb.relay.adapters.ws import WsClient
from pyhbb.relay.bandwidth import RelaySettings
from pyhbb.relay.conns import RelayConn, Session
from pyhbb.relay.core import RelayCore, RelayLimits
from pyhbb.relay.list_files import BLACKLIST_FILE, BLOCKLIST_FILE, read_ip_list
from pyhbb.relay.lists import IpList
from pyhbb.relay.pairing import Pairing
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.relay")

TICK = 1.0
# A spliced session holds two sockets and two pipes (four descriptors).
FDS_PER_SESSION = 6
FEW_SESSIONS = 1000  # below this many a start-up warning says to raise the limit
FD_ADVICE = (
    "raise the open-files limit (systemd: LimitNOFILE=, docker: --ulimit nofile=, shell: ulimit -n)"
)


def relay_limits(opts: HbbrOptions) -> RelayLimits:
    return RelayLimits(
        pair_wait_timeout=opts.pair_wait_timeout,
        first_message_timeout=opts.first_message_timeout,
        idle_timeout=opts.idle_timeout,
        max_waiting=opts.max_waiting,
        max_waiting_per_ip=opts.max_waiting_per_ip,
        max_handshakes=opts.max_handshakes,
        max_handshakes_per_ip=opts.max_handshakes_per_ip,
    )


def relay_settings(opts: HbbrOptions) -> RelaySettings:
    return RelaySettings(
        total_bandwidth=opts.total_bandwidth,
        single_bandwidth=opts.single_bandwidth,
        limit_speed=opts.limit_speed,
        downgrade_threshold_pct=RelaySettings.threshold_pct(opts.downgrade_threshold),
        downgrade_start_check=opts.downgrade_start_check,
    )


class RelayServer:
    """hbbr on ``opts.port`` (TCP) and ``opts.ws_port`` (WebSocket) once started."""

    def __init__(self, opts: HbbrOptions, licence_key: str) -> None:
        self.opts = opts
        self.licence_key = licence_key
        self._core: RelayCore | None = None
        self._executor: Executor | None = None
        self._listeners: list[Listener] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self.closed = False
        self.monitoring: Monitoring | None = None
        self.fd_watch: FdWatch | None = None
        """The open-files limit, and the throttled warning when it is reached."""

    @property
    def core(self) -> RelayCore:
        assert self._core is not None, "not started"
        return self._core

    @property
    def sessions(self) -> set[Session]:
        return self.core.sessions

    @property
    def pairing(self) -> Pairing[RelayConn]:
        return self.core.pairing

    @property
    def blacklist(self) -> IpList:
        return self.core.blacklist

    @property
    def blocklist(self) -> IpList:
        return self.core.blocklist

    async def start(self) -> None:
        """Bind both ports and start serving; raises BindError if a port is taken."""
        opts = self.opts
        loop = asyncio.get_running_loop()
        blacklist = read_ip_list(opts.workdir / BLACKLIST_FILE)
        blocklist = read_ip_list(opts.workdir / BLOCKLIST_FILE)
        core = RelayCore(
            relay_limits(opts),
            relay_settings(opts),
            self.licence_key,
            blacklist,
            blocklist,
            loop.time(),
        )
        soft_limit = raise_fd_limit()
        tcp = tcp_listener(opts.bind, opts.port)
        try:
            ws = tcp_listener(opts.bind, opts.ws_port)
        except OSError:
            tcp.close()
            raise
        try:
            if opts.metrics is not None:
                self.monitoring = Monitoring.bind("hbbr", opts.metrics)
        except OSError:
            tcp.close()
            ws.close()
            raise
        self._core = core
        self.fd_watch = watch = FdWatch("hbbr", soft_limit, open_fds(), FD_ADVICE)
        self._executor = executor = Executor(core, loop, opts.trusted_proxies, watch)

        def on_tcp(sock: socket.socket, peer: Addr) -> None:
            executor.admit(TcpClient(executor, sock, peer), sock)

        def on_ws(sock: socket.socket, peer: Addr) -> None:
            executor.admit(WsClient(executor, sock, peer), sock)

        self._listeners = [
            Listener(loop, tcp, on_tcp, "relay (TCP)", watch.exhausted_now),
            Listener(loop, ws, on_ws, "relay (WebSocket)", watch.exhausted_now),
        ]
        for listener in self._listeners:
            listener.start()
        self._tick_handle = loop.call_later(TICK, self._tick)
        if self.monitoring is not None:
            listeners = self._listeners
            self.monitoring.add_loop_families(lambda: hbbr_families(core, listeners))
            self.monitoring.add_check("tcp", accepting_check(listeners))
            self.monitoring.start()
        self._log_fd_room(watch)
        log.info(
            "#blacklist(%s): %d, #blocklist(%s): %d",
            BLACKLIST_FILE,
            len(blacklist),
            BLOCKLIST_FILE,
            len(blocklist),
        )

    @staticmethod
    def _log_fd_room(watch: FdWatch) -> None:
        """Say at start how many sessions the open-files limit leaves room for."""
        room = watch.max_connections
        if room < 0:
            return
        sessions = room // FDS_PER_SESSION
        if sessions < FEW_SESSIONS:
            log.warning(
                "hbbr: the open-files limit (%d) leaves room for about %d relayed sessions "
                "(%d descriptors each); %s",
                watch.soft_limit,
                sessions,
                FDS_PER_SESSION,
                FD_ADVICE,
            )
        else:
            log.info(
                "open-files limit %d: room for about %d relayed sessions",
                watch.soft_limit,
                sessions,
            )

    def _tick(self) -> None:
        assert self._executor is not None
        loop = self._executor.loop
        try:
            self._executor.run(self.core.tick(loop.time()))
        finally:
            if not self.closed:
                self._tick_handle = loop.call_later(TICK, self._tick)

    async def close(self) -> None:
        """Stop listening, end every session and connection, release every descriptor."""
        if self.closed or self._executor is None:
            return
        self.closed = True
        if self.monitoring is not None:
            await self.monitoring.stop()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for listener in self._listeners:
            listener.close()
        await self._executor.shutdown()
