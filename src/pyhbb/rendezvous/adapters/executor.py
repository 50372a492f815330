"""Performs the core's actions: sends, closes, and the store work that resumes the core.

The executor decides nothing: it reports each store outcome back to the core as an event
(``peer_loaded``/``peer_load_failed``, ``write_done``/``write_failed``), which logs it and
chooses the answers. Peers are read and written through a
:class:`~pyhbb.cluster.directory.Directory` and other nodes reached through a
:class:`~pyhbb.cluster.bus.Bus`: in-process ones on a single server (the SQLite store, no
other node), NATS ones in cluster mode; the executor does not know which.

An action it does not know is a bug: logged as an error and counted,
never silently dropped, and the remaining actions still run.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from pyhbb.cluster.bus import EVICT, PUNCH, RELAY, Bus, NodeGone
from pyhbb.cluster.directory import Directory, DirectoryBusy, StaleRevision
from pyhbb.cluster.local import LocalBus, LocalDirectory
from pyhbb.cluster.messages import PunchRequest, encode_evict, encode_punch, encode_relay
from pyhbb.net.hostport import host_of
from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.actions import (
    Action,
    AwaitAnswer,
    ClaimPeer,
    Close,
    DeliverAnswer,
    Evict,
    GatherOnline,
    InsertPeer,
    LoadPeer,
    Persist,
    ProxyHttp,
    PunchViaOwner,
    RelayViaOwner,
    RenamePeer,
    ResolveServers,
    Send,
    SendUdp,
    StartSession,
    StoreFailure,
    StoreWrite,
    UpdatePeer,
)
from pyhbb.rendezvous.adapters.io_link import IoLink
from pyhbb.rendezvous.adapters.peer_loads import PeerLoads
from pyhbb.rendezvous.adapters.udp_out import UdpOut
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.store.base import IdTaken, PeerStore, StoreError

log = logging.getLogger("pyhbb.rendezvous")

HttpProxyHandler = Callable[[IoLink, bytes], Coroutine[Any, Any, None]]
EVICT_ATTEMPTS = 3  # an evict that is not acknowledged is sent again (core NATS may drop it)


def store_failure(error: Exception) -> StoreFailure:
    """What the core needs to know about a store exception."""
    reason = str(error) or type(error).__name__
    if isinstance(error, IdTaken):
        return StoreFailure(reason, id_taken=True)
    if isinstance(error, StaleRevision):
        return StoreFailure(reason, stale=True)
    if isinstance(error, DirectoryBusy):
        return StoreFailure(reason, busy=True)
    return StoreFailure(reason, bug=None if isinstance(error, StoreError) else error)


class Executor:
    """Runs actions; tracks the tasks it starts so shutdown can wait for them."""

    def __init__(
        self,
        core: RendezvousCore,
        store: PeerStore | None,
        clock: Callable[[], float],
        http_proxy: HttpProxyHandler,
        directory: Directory | None = None,
        bus: Bus | None = None,
        readers: int = 1,
    ) -> None:
        self.core = core
        self.store = store
        self.directory: Directory = directory or LocalDirectory(store)
        self.bus: Bus = bus or LocalBus()
        self.clock = clock
        self.udp = UdpOut()
        """Opened by the UDP endpoint on P."""
        self._send_udp = self.udp.send  # bound once: the heartbeat path
        self.http_proxy = http_proxy
        self.tasks: set[asyncio.Task[None]] = set()
        self.refused = 0
        """Actions this executor could not perform (a bug if not 0)."""
        # Looked up once: get_running_loop() checks the process id on every call in 3.11.
        self._loop = asyncio.get_running_loop()
        self.loads = PeerLoads(
            core, self.directory, clock, self.run, self._spawn, store_failure, readers
        )
        """Performs LoadPeer, many ids per database read."""

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is SendUdp:
                self._send_udp(action.payload, action.addr)
            elif type(action) is Send:
                link = action.link
                if isinstance(link, IoLink):
                    link.send_message(action.payload)
                else:
                    self._refuse(action)
            elif type(action) is Close:
                link = action.link
                if isinstance(link, IoLink):
                    link.close()
                else:
                    self._refuse(action)
            elif type(action) is StartSession:
                link = action.link
                if isinstance(link, IoLink):
                    link.start_session(action.heartbeat, action.timeout)
                else:
                    self._refuse(action)
            elif type(action) is LoadPeer:
                self.loads.load(action.peer_id)
            elif type(action) is Persist:
                self._spawn(self._persist(action))
            elif type(action) is ResolveServers:
                self._spawn(self._resolve(action))
            elif type(action) is ProxyHttp and isinstance(action.link, IoLink):
                self._spawn(self.http_proxy(action.link, action.request))
            elif type(action) is AwaitAnswer:
                self.bus.await_answer(action.key)
            elif type(action) is DeliverAnswer:
                self.bus.deliver_answer(action.key, action.payload)
            elif type(action) is PunchViaOwner:
                self._spawn(self._punch_via_owner(action))
            elif type(action) is RelayViaOwner:
                self._spawn(self._relay_via_owner(action))
            elif type(action) is Evict:
                self._spawn(self._evict(action))
            elif type(action) is GatherOnline:
                self._spawn(self._gather_online(action))
            else:
                self._refuse(action)

    def _refuse(self, action: object) -> None:
        self.refused += 1
        if worth_logging(self.refused):
            log.error(
                "cannot perform %r (%d actions refused so far): this is a bug, please report it",
                action,
                self.refused,
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _persist(self, action: Persist) -> None:
        try:
            revision = await self._write(action.write)
        except Exception as e:  # StoreError, or a store bug: the client still gets an answer
            self.run(self.core.write_failed(action, store_failure(e), self.clock()))
            return
        self.run(self.core.write_done(action, revision))

    async def _write(self, write: StoreWrite) -> int:
        d = self.directory
        if isinstance(write, InsertPeer):
            return await d.create(write.guid, write.peer_id, write.uuid, write.pk, write.ip)
        if isinstance(write, UpdatePeer):
            return await d.compare_and_set(
                write.guid, write.peer_id, write.pk, write.ip, write.revision
            )
        if isinstance(write, RenamePeer):
            return await d.rename(write.guid, write.old_id, write.new_id, write.revision)
        if isinstance(write, ClaimPeer):
            return await d.claim(write.peer_id, write.revision)
        # a new kind of write must be added here, not acknowledged unwritten
        raise TypeError(f"unknown store write {write!r}")

    # -- other nodes ------------------------------------------------------------------------

    async def _punch_via_owner(self, action: PunchViaOwner) -> None:
        link = action.link
        request = PunchRequest(
            action.peer_id, action.request, link.key, link.is_ws, action.relay_server
        )
        try:
            reply = await self.bus.to_owner(action.node, PUNCH, encode_punch(request))
            outcome = reply.decode("ascii", "replace")
        except NodeGone:
            outcome = "gone"
        except TimeoutError:
            outcome = "timeout"
        except Exception as e:  # the bus is down: A hears OFFLINE and retries
            log.debug("punch via %s failed: %s", action.node, e)
            outcome = "unreachable"
        self.run(self.core.owner_punch_answered(action, outcome, self.clock()))

    async def _relay_via_owner(self, action: RelayViaOwner) -> None:
        try:
            await self.bus.to_owner(
                action.node, RELAY, encode_relay(action.peer_id, action.payload)
            )
        except Exception as e:  # upstream gives A no answer either when B is unknown
            log.debug("relay request via %s failed: %s", action.node, e)

    async def _evict(self, action: Evict) -> None:
        body = encode_evict(action.peer_id, action.revision)
        for _ in range(EVICT_ATTEMPTS):
            try:
                await self.bus.to_owner(action.node, EVICT, body)
                return
            except NodeGone:
                return  # it will check what it holds when it comes back (docs/cluster.md §1.5)
            except Exception as e:
                log.debug("evict of %s at %s failed: %s", action.peer_id, action.node, e)
        log.warning(
            "node %s did not confirm that it forgot peer %s; it checks its peers against the "
            "directory after a reconnect",
            action.node,
            action.peer_id,
        )

    async def _gather_online(self, action: GatherOnline) -> None:
        try:
            bitmaps = await self.bus.online_scatter(action.peers)
        except Exception as e:  # the bus is down: answer with what this node knows
            log.debug("online scatter failed: %s", e)
            bitmaps = []
        self.run(self.core.online_gathered(action, bitmaps))

    async def _resolve(self, action: ResolveServers) -> None:
        resolvable = [s for s in action.servers if await resolves(s)]
        self.run(self.core.adopt_config(action.serial, resolvable))

    async def drain(self) -> None:
        """Wait for every database task in flight (clean shutdown loses no write)."""
        while self.tasks or self.loads.queued:
            self.loads.start()  # queued reads: their answers may lead to writes
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


async def resolves(server: str) -> bool:
    """Whether ``host[:port]`` resolves by DNS (upstream drops entries that do not)."""
    try:
        await asyncio.get_running_loop().getaddrinfo(host_of(server), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return True
