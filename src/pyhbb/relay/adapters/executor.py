"""Performs the relay core's actions, and is the context every client protocol reports to."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Sequence

from pyhbb.net.fd_limit import FdWatch
from pyhbb.net.forwarded import Network
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
from pyhbb.relay.adapters.base import ClientProtocol
from pyhbb.relay.adapters.tcp import TcpClient
from pyhbb.relay.conns import Phase, RelayConn, Session
from pyhbb.relay.core import RelayCore
from pyhbb.relay.splice_pump import SplicePump
from pyhbb.relay.ws_bridge import Bridge

log = logging.getLogger("pyhbb.relay")


def _io(conn: RelayConn) -> ClientProtocol:
    assert isinstance(conn, ClientProtocol)
    return conn


class Executor:
    """Runs actions against client protocols, the splice pump and the bridge."""

    def __init__(
        self,
        core: RelayCore,
        loop: asyncio.AbstractEventLoop,
        trusted_proxies: Sequence[Network],
        fd_watch: FdWatch | None = None,
    ) -> None:
        self._core = core
        self._loop = loop
        self._trusted = trusted_proxies
        self._fd_watch = fd_watch
        self.conns: set[ClientProtocol] = set()
        """Client connections that have a transport."""
        self._opening: set[asyncio.Task[object]] = set()

    @property
    def core(self) -> RelayCore:
        return self._core

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def trusted_proxies(self) -> Sequence[Network]:
        return self._trusted

    def opened(self, conn: ClientProtocol) -> None:
        self.conns.add(conn)

    def lost(self, conn: ClientProtocol) -> None:
        self.conns.discard(conn)

    def admit(self, conn: ClientProtocol, sock: socket.socket) -> None:
        """A connection was just accepted: the core decides, then it gets a transport."""
        self.run(self._core.connected(conn, self._loop.time()))
        if conn.phase is Phase.CLOSED:
            return  # refused: the Drop closed the socket
        task = self._loop.create_task(self._connect(conn, sock))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _connect(self, conn: ClientProtocol, sock: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: conn, sock)
        except (OSError, ValueError) as e:  # the client is gone, or the socket was dropped
            log.debug("%r: cannot start: %s", conn, e)
            sock.close()
            self._core.closed(conn, self._loop.time())

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Deadline):
                _io(action.conn).set_deadline(action.at)
            elif isinstance(action, Wait):
                _io(action.conn).wait()
            elif isinstance(action, Drop):
                _io(action.conn).drop()
            elif isinstance(action, Reply):
                conn = action.conn
                assert isinstance(conn, TcpClient)
                conn.reply(action.text)
            elif isinstance(action, StartSplice):
                self._splice(action.session)
            elif isinstance(action, StartBridge):
                self._bridge(action.session)
            elif isinstance(action, Cut):
                if action.session.mover is not None:
                    action.session.mover.close(action.reason)
            else:  # pragma: no cover - a new action type must be handled here
                raise TypeError(f"unknown relay action {action!r}")

    def _ended(self, session: Session, reason: str) -> None:
        self._core.session_ended(session, reason, self._loop.time())

    def _splice(self, session: Session) -> None:
        first, second = session.first, session.second
        assert isinstance(first, TcpClient) and isinstance(second, TcpClient)
        socks: list[socket.socket] = []
        try:
            for conn in (first, second):
                socks.append(conn.detach())
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE) and self._fd_watch is not None:
                self._fd_watch.exhausted_now(f"relay {session.uuid} not started")
            else:
                log.warning("relay %s: cannot hand the connections over: %s", session.uuid, e)
            for sock in socks:
                sock.close()
            first.abort()
            second.abort()
            self._ended(session, f"error: {e}")
            return
        pump = SplicePump(
            self._loop,
            socks[0],
            socks[1],
            session.budget,
            lambda reason: self._ended(session, reason),
            pending_a_to_b=first.leftover,
            pending_b_to_a=second.leftover,
        )
        session.mover = pump
        pump.start()
        error = pump.start_error
        if error is not None and error.errno in (errno.EMFILE, errno.ENFILE) and self._fd_watch:
            self._fd_watch.exhausted_now(f"no pipe for relay {session.uuid}")

    def _bridge(self, session: Session) -> None:
        bridge = Bridge(
            self._loop,
            _io(session.first),
            _io(session.second),
            session.budget,
            lambda reason: self._ended(session, reason),
        )
        session.mover = bridge
        bridge.start()

    async def shutdown(self) -> None:
        """End every session and connection."""
        self.run(self._core.shutdown())
        if self._opening:
            await asyncio.gather(*self._opening, return_exceptions=True)
        for conn in list(self.conns):
            conn.abort()
        await asyncio.sleep(0)  # let the transports report their end
