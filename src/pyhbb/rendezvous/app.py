"""hbbs assembled: options → keys, store, core, listeners; then run until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyhbb.cluster.bus import Bus
from pyhbb.cluster.directory import Directory
from pyhbb.cluster.options import default_node_name
from pyhbb.config.hbbs import HbbsOptions
from pyhbb.config.sources import ConfigError
from pyhbb.net.conn_limits import ConnectionLimiter
from pyhbb.net.fd_limit import FdWatch, open_fds, raise_fd_limit
from pyhbb.net.hostport import format_addr
from pyhbb.net.local_ip import detect_local_ip
from pyhbb.net.sockets import BACKLOG, AdoptError, adopt, tcp_listener, udp_socket
from pyhbb.observability.hbbs import (
    UdpVerdict,
    hbbs_families,
    listeners_check,
    relay_probe,
    udp_check,
)
from pyhbb.observability.health import Probe
from pyhbb.observability.metrics import Monitoring
from pyhbb.rendezvous import relay_health, watchdog
from pyhbb.rendezvous.adapters.base import AdapterContext
from pyhbb.rendezvous.adapters.executor import Executor, resolves
from pyhbb.rendezvous.adapters.http_proxy import HttpProxy
from pyhbb.rendezvous.adapters.nat_port import NatPortLink
from pyhbb.rendezvous.adapters.restart import (
    DRAIN_TIMEOUT,
    RestartInPlace,
    SocketSender,
    gc_paused,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)
from pyhbb.rendezvous.adapters.tcp import TcpLink
from pyhbb.rendezvous.adapters.udp import UdpEndpoint
from pyhbb.rendezvous.adapters.warm_start import warm_start
from pyhbb.rendezvous.adapters.ws import WsLink
from pyhbb.rendezvous.console import Console
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.handover import (
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    max_snapshot_bytes,
)
from pyhbb.rendezvous.messages import config_update_problem
from pyhbb.rendezvous.rate_limits import BlockerLimits
from pyhbb.rendezvous.state import CoreSettings
from pyhbb.store.base import PeerStore, StoreError
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from pyhbb.store.schema import db_path_from_url
from pyhbb.wire.keys import ServerKey, resolve_hbbs_key

log = logging.getLogger("pyhbb.rendezvous")

HOUSEKEEPING_INTERVAL = 0.1  # the core spreads a second's sweeping over these calls
PRELOAD_SHARE = 0.9  # the warm start fills the peer table up to this share of its limit
SUMMARY_INTERVAL = 600  # seconds between the summary log lines


def core_settings(opts: HbbsOptions, key: ServerKey) -> CoreSettings:
    local_ip = opts.local_ip or (detect_local_ip() if opts.mask else "")
    return CoreSettings(
        enforced_key=key.enforced,
        signing=key.signing,
        relay_servers=opts.relay_servers,
        serial=opts.serial,
        rendezvous_servers=opts.rendezvous_servers,
        software_url=opts.software_url,
        always_use_relay=opts.always_use_relay,
        mask=opts.mask,
        local_ip=local_ip,
        blocker=BlockerLimits(burst=opts.register_burst_per_ip, max_ids=opts.register_ids_per_ip),
        max_peers=opts.max_peers,
        new_peers_per_second=opts.new_peers_per_second,
        # database reads for RegisterPk: never below what new ids alone may need
        register_lookups_per_second=max(2000.0, 2.0 * opts.new_peers_per_second),
        max_sessions=opts.max_connections,
        max_sessions_per_ip=opts.max_sessions_per_ip,
        udp_punch=opts.udp_punch,
        id_change=opts.id_change,
        node_name=(opts.node_name or default_node_name()) if opts.cluster else "",
    )


class HbbsServer:
    """One running hbbs: listeners on P (UDP+TCP), P-1 and P+2 around one core."""

    def __init__(
        self,
        opts: HbbsOptions,
        key: ServerKey,
        store: PeerStore | None,
        directory: Directory | None = None,
        bus: Bus | None = None,
        db: SqliteDatabase | None = None,
    ) -> None:
        """``store`` for a single server (``db``: the database under it, watched by the
        metrics and health check); in cluster mode ``directory`` and ``bus``."""
        self.opts = opts
        self.db = db
        self.key = key
        self.store = store
        self.core = RendezvousCore(core_settings(opts, key))
        loop = asyncio.get_running_loop()
        self.http_proxy = HttpProxy(opts.api_server, opts.max_frame - 4096)
        self.executor = Executor(
            self.core,
            store,
            loop.time,
            self.http_proxy.handle,
            directory,
            bus,
            readers=opts.db_readers,
        )
        self.limiter = ConnectionLimiter(opts.max_connections_per_ip, opts.max_connections, "hbbs")
        console = Console(self.core.admin, resolves, self._extra_stats)
        self.ctx = AdapterContext(
            core=self.core,
            executor=self.executor,
            limiter=self.limiter,
            console=console if opts.console else None,
            signing=key.signing,
            secure_tcp=opts.secure_tcp,
            trusted_proxies=list(opts.trusted_proxies),
            secure_max_frame=opts.max_frame,
        )
        self.nat_ctx = AdapterContext(
            core=self.core,
            executor=self.executor,
            limiter=self.limiter,
            console=self.ctx.console,
            links=self.ctx.links,
            counts=self.ctx.counts,
        )
        self._servers: list[asyncio.Server] = []
        self.sockets: dict[str, socket.socket] = {}
        """The listeners by role (handover.SOCKET_ROLES): kept open by a restart in place."""
        self._warm_start: asyncio.Task[None] | None = None
        self.handing_over = False
        self.peers_handed_over = 0
        """Peers taken from the previous process's snapshot (a restart in place)."""
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_endpoint: UdpEndpoint | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.fd_watch: FdWatch | None = None
        self._loop_handler: Any = None
        self.exit_code = 0
        self.stopped = asyncio.Event()
        self.monitoring: Monitoring | None = None
        self.udp_verdict = UdpVerdict(enabled=False)

    def _extra_stats(self) -> dict[str, int]:
        return {
            "connections_open": self.limiter.count,
            "connections_refused": self.limiter.refused,
            "db_tasks_in_flight": len(self.executor.tasks),
            "actions_refused": self.executor.refused,
            "udp_sends_before_open": self.executor.udp.before_open,
            "udp_oversized_dropped": (
                self._udp_endpoint.oversized if self._udp_endpoint is not None else 0
            ),
        }

    async def start(
        self, inherited: dict[str, int] | None = None, warm_start_needed: bool = True
    ) -> None:
        """Bind every port (raising BindError with advice on failure), or adopt the
        listeners a restart in place left (``inherited``: descriptors by role), and start
        serving; ``warm_start_needed`` is False when the peer table came with them."""
        opts = self.opts
        loop = asyncio.get_running_loop()
        soft_limit = raise_fd_limit()
        fds = inherited or {}
        udp = self._listener(fds.get("udp"), socket.SOCK_DGRAM, opts.port)
        if opts.rmem > 0:  # an adopted socket keeps the old value: the option may be new
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts.rmem)
        tcp = self._listener(fds.get("tcp"), socket.SOCK_STREAM, opts.port)
        nat = self._listener(fds.get("nat"), socket.SOCK_STREAM, opts.nat_port)
        ws = self._listener(fds.get("ws"), socket.SOCK_STREAM, opts.ws_port)
        self.sockets = {"udp": udp, "tcp": tcp, "nat": nat, "ws": ws}
        if opts.metrics is not None:
            self.monitoring = Monitoring.bind("hbbs", opts.metrics)
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: UdpEndpoint(self.core, self.executor), sock=udp
        )
        self._udp = transport
        self._udp_endpoint = endpoint
        for sock, factory in (
            (tcp, lambda: TcpLink(self.ctx)),
            (nat, lambda: NatPortLink(self.nat_ctx)),
            (ws, lambda: WsLink(self.ctx)),
        ):
            # asyncio listens again with its own default backlog (100) unless told
            self._servers.append(await loop.create_server(factory, sock=sock, backlog=BACKLOG))
        self.fd_watch = FdWatch("hbbs", soft_limit, open_fds())
        self._watch_accept_errors(loop)
        self._spawn(self._housekeeping())
        if not self.opts.cluster:  # in cluster mode the node checks and shares its relays
            self._spawn(relay_health.check_forever(self.core.admin))
        limit = int(opts.max_peers * PRELOAD_SHARE)
        if self.store is not None and not self.opts.cluster and limit > 0 and warm_start_needed:
            # a single server's own database (in a cluster, peers are claimed one by one)
            self._warm_start = asyncio.ensure_future(
                warm_start(self.core, self.store, self.executor.clock, limit, self.executor.run)
            )
            self._tasks.append(self._warm_start)
        dest = watchdog.target(opts.test_hbbs, opts.port, opts.bind)
        if dest is not None:
            self.udp_verdict.enabled = True
            self._spawn(
                watchdog.run(
                    dest,
                    lambda: self.request_stop(1),
                    lambda: endpoint.received,
                    self.udp_verdict.hear,
                )
            )
        if self.monitoring is not None:
            self._start_monitoring(self.monitoring)
        self._log_startup()
        warning = self.fd_watch.describe(opts.max_connections)
        if warning is not None:
            log.warning("%s", warning)

    def _listener(self, fd: int | None, kind: socket.SocketKind, port: int) -> socket.socket:
        bind = self.opts.bind
        if fd is not None:
            try:
                return adopt(fd, kind, bind, port)
            except AdoptError as e:
                log.warning("restart in place: %s; binding anew", e)
        if kind == socket.SOCK_DGRAM:
            return udp_socket(bind, port)
        return tcp_listener(bind, port)

    def _start_monitoring(self, monitoring: Monitoring) -> None:
        """/metrics and /healthz: the core's counters and tables, UDP and TCP listeners,
        the database and the relay clients are sent to."""
        opts = self.opts
        monitoring.add_loop_families(
            lambda: hbbs_families(self.core, self.executor, self.ctx.counts, self._udp_endpoint)
        )
        monitoring.add_check("udp", udp_check(self.udp_verdict, lambda: self._udp))
        names = (f"TCP {opts.port}", f"TCP {opts.nat_port}", f"TCP {opts.ws_port}")
        monitoring.add_check("tcp", listeners_check(list(zip(names, self._servers, strict=True))))
        if self.db is not None:
            monitoring.watch_database(self.db)
        # Clients get the configured relays, else this host's port P+1 (an hbbr beside us).
        host = opts.bind if opts.bind and opts.bind not in ("0.0.0.0", "::") else "127.0.0.1"
        own = format_addr((host, opts.port + 1))
        admin = self.core.admin
        probe = Probe(relay_probe(lambda: admin.relay_servers or [own]), interval=10, timeout=5)
        # not critical: restarting hbbs would not bring an unreachable relay back
        monitoring.add_probe("relay", probe, critical=False)
        monitoring.start()

    def _watch_accept_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """asyncio reports every accept that fails for want of descriptors (uvloop says
        nothing: the housekeeping check covers it): one throttled line that says what to
        raise, instead of one line per attempt."""
        previous = loop.get_exception_handler()
        self._loop_handler = previous

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            watch = self.fd_watch
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE) and watch:
                watch.exhausted_now(f"accept failed: {exc.strerror}")
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

    def _spawn(self, coro: Awaitable[None]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    def _log_startup(self) -> None:
        opts, key = self.opts, self.key
        where = f" on {opts.bind}" if opts.bind else ""
        log.info(
            "hbbs listening%s: UDP+TCP %d, TCP %d (NAT test, online status%s), WebSocket %d",
            where,
            opts.port,
            opts.nat_port,
            ", console" if opts.console else "",
            opts.ws_port,
        )
        if key.signing is not None:
            log.info(
                "public key: %s%s",
                key.public_b64,
                "" if key.enforced else " (not enforced: any client key is accepted)",
            )
        elif key.enforced:
            log.warning(
                "key %s is enforced but nothing is signed: clients will get "
                "unencrypted sessions; use -k - or a secret key",
                key.enforced,
            )
        else:
            log.warning("no key: clients will get unencrypted sessions")
        relays = ",".join(opts.relay_servers)
        log.info(
            "relay servers: %s", relays or f"none (clients use this host, port {opts.port + 1})"
        )
        if self.core.admin.always_use_relay:
            log.info("ALWAYS_USE_RELAY is on: every connection is relayed")

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        next_summary = loop.time() + SUMMARY_INTERVAL
        next_fd_check = loop.time()
        admin = self.core.admin
        last = admin.counters()
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            now = loop.time()
            self.executor.run(self.core.on_timer(now))
            # once a second, as before the sweeps were split: its count is "seconds short"
            if self.fd_watch is not None and now >= next_fd_check:
                next_fd_check = now + 1.0
                self.fd_watch.check(self.limiter.count)
            if now >= next_summary:
                next_summary = now + SUMMARY_INTERVAL
                counters = admin.counters()
                diff = {k: v - last.get(k, 0) for k, v in counters.items()}
                last = counters
                sizes = admin.table_sizes(now)
                log.info(
                    "last %d min: %d registrations stored, %d punch and %d relay requests; "
                    "%d peers online, %d in memory, %d connections open",
                    SUMMARY_INTERVAL // 60,
                    diff.get("register_pk_stored", 0),
                    diff.get("punch_requests", 0),
                    diff.get("relay_requests", 0),
                    sizes["peers_online"],
                    sizes["peers_in_memory"],
                    self.limiter.count,
                )

    def request_stop(self, exit_code: int = 0) -> None:
        self.exit_code = max(self.exit_code, exit_code)
        self.stopped.set()

    def begin_handover(self) -> None:
        """Stop serving for a restart in place (:meth:`hand_over` follows)."""
        self.handing_over = True
        self.stopped.set()

    async def hand_over(self, restart: RestartInPlace, path: Path) -> None:
        """Stop reading and accepting (the kernel queues for the next process), finish
        the database work in flight (bounded), then write the peer table to ``path``."""
        warm = self._warm_start
        complete = warm is None or (warm.done() and not warm.cancelled())
        sender = restart.reading_stopped()
        if self._udp is not None:
            self._udp.close()  # uvloop cannot pause UDP reading: the kept socket queues
        self.executor.udp.open(SocketSender(sender), sender.family == socket.AF_INET6)
        for server in self._servers:
            server.close()
        try:
            await self.stop(drain_timeout=DRAIN_TIMEOUT)
        finally:
            sender.close()
        with gc_paused():
            ids, records = self.core.state.peers.compact_records()
            data = encode_snapshot(ids, records, self.executor.clock(), time.time(), complete)
            del records
        try:
            write_snapshot(path, data)
        except OSError as e:
            log.error(
                "hand-over: cannot write %s (%s): the next process reads the database", path, e
            )
            return
        log.info(
            "hand-over: %d peers written to %s (%d bytes), %.0f ms after reading stopped",
            len(ids),
            path,
            len(data),
            (time.time() - restart.paused_at) * 1000,
        )

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop listening, close every connection, finish every database write (for at
        most ``drain_timeout`` seconds when given)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.monitoring is not None:
            await self.monitoring.stop()
        if self.fd_watch is not None:
            asyncio.get_running_loop().set_exception_handler(self._loop_handler)
        for server in self._servers:
            server.close()
        if self._udp is not None:
            self._udp.close()
        for link in list(self.ctx.links):
            link.close()
        if drain_timeout is None:
            await self.executor.drain()
        else:
            try:
                await asyncio.wait_for(self.executor.drain(), drain_timeout)
            except TimeoutError:
                log.warning(
                    "%d database tasks unfinished after %.0f s: going ahead (none was "
                    "acknowledged; their clients send again)",
                    len(self.executor.tasks),
                    drain_timeout,
                )
        await self.http_proxy.close()
        await self.executor.directory.close()
        log.info("hbbs stopped")


def check_options(opts: HbbsOptions) -> ServerKey:
    """What :func:`serve` refuses before binding anything (ConfigError, KeyError_): also
    run on SIGUSR2, so that a bad edit leaves the running server as it is."""
    problem = config_update_problem(opts.rendezvous_servers)
    if problem is not None:
        raise ConfigError(f"-R/RENDEZVOUS_SERVERS: {problem}")
    return resolve_hbbs_key(opts.key, opts.workdir)


async def serve(
    opts: HbbsOptions,
    stop: asyncio.Event | None = None,
    on_started: Callable[[HbbsServer], None] | None = None,
    restart: RestartInPlace | None = None,
) -> int:
    """Run hbbs until ``stop`` is set (or the self-test fails); returns the exit status.
    With ``restart``, SIGUSR2 hands over to the next process (the caller then calls
    ``restart.exec()`` when ``restart.accepted``), and what the previous one handed
    over is taken.

    Raises ConfigError for settings that would make hbbs send oversized answers."""
    key = check_options(opts)
    if opts.cluster:
        return await _serve_cluster_node(opts, key, stop, on_started, restart)
    db_url = opts.db_url
    if not Path(db_url).is_absolute() and "://" not in db_url and not db_url.startswith("sqlite:"):
        db_url = str(opts.workdir / db_url)
    started = time.monotonic()
    db = await SqliteDatabase.open(db_url, readers=opts.db_readers)
    store = SqlitePeerStore(db)
    try:
        count = await store.count()
    except Exception:
        await db.close()
        raise
    log.info(
        "database %s: %d peers (opened in %.0f ms; read into memory in the background)",
        db_url,
        count,
        (time.monotonic() - started) * 1000,
    )
    server = HbbsServer(opts, key, store, db=db)
    handover = snapshot_path(db_path_from_url(db_url))
    try:
        # Before the first client is served: a disabled device is never reachable.
        admin = server.core.admin
        try:
            disabled = await store.disabled_ids(admin.disabled_limit)
        except StoreError as e:
            raise StoreError(f"reading the devices disabled in the web console failed: {e}") from e
        admin.load_disabled(*disabled)
        warm_start_needed = True
        if restart is not None and restart.inherited is not None:
            warm_start_needed = _take_snapshot(server, handover)
        # commits the store's writes
        return await _run_until_stopped(
            server, stop, on_started, restart, handover, warm_start_needed
        )
    finally:
        if server.handing_over:
            try:
                await asyncio.wait_for(db.close(), DRAIN_TIMEOUT)
            except TimeoutError:
                log.warning("database writes still queued after %.0f s: going ahead", DRAIN_TIMEOUT)
        else:
            await db.close()


def _take_snapshot(server: HbbsServer, path: Path) -> bool:
    """Fill the peer table from the previous process's snapshot; returns whether the
    warm start from the database is still needed (one log line says why when it is)."""
    peers = server.core.state.peers
    try:
        data = read_snapshot(path, max_snapshot_bytes(peers.max_peers))
        with gc_paused():
            snapshot = decode_snapshot(data, server.executor.clock(), time.time(), peers.max_peers)
    except (OSError, ValueError) as e:  # SnapshotError is a ValueError
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        kind = "unusable" if isinstance(e, SnapshotError) else "unreadable"
        log.warning(
            "restart in place: peer snapshot %s %s (%s): peers come back through the "
            "database (warm start)",
            path,
            kind,
            why,
        )
        return True
    with gc_paused():
        peers.add_compact(snapshot.records)
    server.peers_handed_over = len(snapshot.records)
    return not snapshot.complete


async def _serve_cluster_node(
    opts: HbbsOptions,
    key: ServerKey,
    stop: asyncio.Event | None,
    on_started: Callable[[HbbsServer], None] | None,
    restart: RestartInPlace | None,
) -> int:
    """hbbs as one node of a cluster: peers live in the NATS directory, not in SQLite."""
    from pyhbb.rendezvous.adapters.cluster.node import ClusterNode

    name = opts.node_name or default_node_name()
    node = await ClusterNode.connect(opts.cluster, name)
    try:
        count = await node.directory.count()
        log.info(
            "cluster mode: node %s, NATS %s, %d directory entries",
            name,
            ",".join(opts.cluster),
            count,
        )
        server = HbbsServer(opts, key, None, node.directory, node.bus)
        await node.start(
            server.core, server.executor.run, asyncio.get_running_loop().time, opts.relay_servers
        )
        return await _run_until_stopped(server, stop, on_started, restart)
    finally:
        await node.close()


async def _run_until_stopped(
    server: HbbsServer,
    stop: asyncio.Event | None,
    on_started: Callable[[HbbsServer], None] | None,
    restart: RestartInPlace | None = None,
    handover: Path | None = None,
    warm_start_needed: bool = True,
) -> int:
    inherited = restart.inherited if restart is not None else None
    # What is loaded by now (modules, protobuf descriptors, tables) lives as long as the
    # process: out of the cyclic GC's sight, a full collection no longer walks ~30,000
    # objects (~35 ms) but only what was created since (bench/RESULTS.md, loop stalls).
    # Collected before the ports open: after, those ~35 ms stalled the first answers.
    gc.collect()
    gc.freeze()
    try:
        await server.start(inherited.fds if inherited else None, warm_start_needed)
    except BaseException:
        await server.stop()
        raise
    if inherited is not None:
        log.info(
            "restarted in place: %d peers kept, gap %.0f ms%s",
            server.peers_handed_over,
            (time.time() - inherited.paused_at) * 1000,
            "" if warm_start_needed else " (no warm start needed)",
        )
    if restart is not None:
        restart.attach(server.begin_handover, server.sockets, bool(server.opts.cluster))
    gc.freeze()  # what start() built (listeners, metrics): no collection, no stall
    if on_started is not None:
        on_started(server)
    waiters = [asyncio.ensure_future(server.stopped.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        if server.handing_over and restart is not None and handover is not None:
            await server.hand_over(restart, handover)
        else:
            await server.stop()
    return server.exit_code
