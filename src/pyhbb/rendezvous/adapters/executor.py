"""Performs the core's actions: sends, closes, and the store work that resumes the core."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

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
    StoreWrite,
    UpdatePeer,
)
from pyhbb.rendezvous.adapters.base import IoLink
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.store.base import IdTaken, PeerStore, StoreError
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.rendezvous")

UdpSend = Callable[[bytes, Addr], None]


class Executor:
    """Runs actions; tracks the tasks it starts so shutdown can wait for them."""

    def __init__(
        self,
        core: RendezvousCore,
        store: PeerStore,
        clock: Callable[[], float],
        http_proxy: Callable[[IoLink, bytes], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.core = core
        self.store = store
        self.clock = clock
        self.udp_send: UdpSend = lambda payload, addr: None
        self.http_proxy = http_proxy
        self.tasks: set[asyncio.Task[None]] = set()
        # Looked up once: get_running_loop() checks the process id on every call in 3.11.
        self._loop = asyncio.get_running_loop()

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is SendUdp:
                self.udp_send(action.payload, action.addr)
            elif type(action) is Send:
                link = action.link
                if isinstance(link, IoLink):
                    link.send_message(action.payload)
            elif type(action) is Close:
                link = action.link
                if isinstance(link, IoLink):
                    link.close()
            elif type(action) is StartSession:
                link = action.link
                if isinstance(link, IoLink):
                    link.start_session(action.heartbeat, action.timeout)
            elif type(action) is LoadPeer:
                self._spawn(self._load(action.peer_id))
            elif type(action) is Persist:
                self._spawn(self._persist(action))
            elif type(action) is ResolveServers:
                self._spawn(self._resolve(action))
            elif (
                type(action) is ProxyHttp
                and self.http_proxy is not None
                and isinstance(action.link, IoLink)
            ):
                self._spawn(self.http_proxy(action.link, action.request))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _load(self, peer_id: str) -> None:
        try:
            row = await self.store.get(peer_id)
        except Exception as e:  # StoreError, or a store bug: the waiters still get answers
            if self.core.state.log_throttle.count("read error", self.clock()):
                log.error(
                    "database read of %s failed: %s",
                    peer_id,
                    e,
                    exc_info=not isinstance(e, StoreError),
                )
            self.run(self.core.peer_load_failed(peer_id, self.clock()))
            return
        self.run(self.core.peer_loaded(peer_id, row, self.clock()))

    async def _persist(self, action: Persist) -> None:
        try:
            await self._write(action.write)
        except IdTaken:
            self.core.persist_failed(action.write)
            conflict = action.on_conflict
            self.run(action.on_fail if conflict is None else conflict)
            return
        except Exception as e:  # StoreError, or a store bug: the client still gets an answer
            if self.core.state.log_throttle.count("write error", self.clock()):
                log.error("database write failed: %s", e, exc_info=not isinstance(e, StoreError))
            self.core.persist_failed(action.write)
            self.run(action.on_fail)
            return
        self.core.persist_succeeded(action.write)
        self.run(action.on_ok)

    async def _write(self, write: StoreWrite) -> None:
        if isinstance(write, InsertPeer):
            await self.store.insert(write.guid, write.peer_id, write.uuid, write.pk, write.ip)
        elif isinstance(write, UpdatePeer):
            await self.store.update(write.guid, write.peer_id, write.pk, write.ip)
        elif isinstance(write, RenamePeer):
            await self.store.rename(write.guid, write.new_id)

    async def _resolve(self, action: ResolveServers) -> None:
        resolvable = [s for s in action.servers if await resolves(s)]
        self.run(self.core.adopt_config(action.serial, resolvable))

    async def drain(self) -> None:
        """Wait for every database task in flight (clean shutdown loses no write)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


async def resolves(server: str) -> bool:
    """Whether ``host[:port]`` resolves by DNS (upstream drops entries that do not)."""
    host = server
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return True
