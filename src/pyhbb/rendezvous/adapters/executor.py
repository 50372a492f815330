"""Performs the core's actions: sends, closes, and the store work that resumes the core.

The executor decides nothing: it reports each store outcome back to the core as an event
(``peer_loaded``/``peer_load_failed``, ``write_done``/``write_failed``), which logs it and
chooses the answers. An action it does not know is a bug: logged as an error and counted,
never silently dropped, and the remaining actions still run.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from pyhbb.net.hostport import host_of
from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.actions import (
    Action,
    Close,
    InsertPeer,
    LoadPeer,
    Persist,
    ProxyHttp,
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


def store_failure(error: Exception) -> StoreFailure:
    """What the core needs to know about a store exception."""
    reason = str(error) or type(error).__name__
    if isinstance(error, IdTaken):
        return StoreFailure(reason, id_taken=True)
    return StoreFailure(reason, bug=None if isinstance(error, StoreError) else error)


class Executor:
    """Runs actions; tracks the tasks it starts so shutdown can wait for them."""

    def __init__(
        self,
        core: RendezvousCore,
        store: PeerStore,
        clock: Callable[[], float],
        http_proxy: HttpProxyHandler,
        readers: int = 1,
    ) -> None:
        self.core = core
        self.store = store
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
        self.loads = PeerLoads(core, store, clock, self.run, self._spawn, store_failure, readers)
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
            await self._write(action.write)
        except Exception as e:  # StoreError, or a store bug: the client still gets an answer
            self.run(self.core.write_failed(action, store_failure(e)))
            return
        self.run(self.core.write_done(action))

    async def _write(self, write: StoreWrite) -> None:
        if isinstance(write, InsertPeer):
            await self.store.insert(write.guid, write.peer_id, write.uuid, write.pk, write.ip)
        elif isinstance(write, UpdatePeer):
            await self.store.update(write.guid, write.peer_id, write.pk, write.ip)
        elif isinstance(write, RenamePeer):
            await self.store.rename(write.guid, write.new_id)
        else:  # a new kind of write must be added here, not acknowledged unwritten
            raise TypeError(f"unknown store write {write!r}")

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
