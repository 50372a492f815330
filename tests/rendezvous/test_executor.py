"""The executor performs every action or refuses it loudly, over real loopback sockets.

An action it cannot perform (an unknown type, a link that is not a connection) is a bug:
it is logged as an error and counted, and the actions after it still run. A datagram the
core asks for before the UDP socket is open is logged and counted, never silently lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from pyhbb.rendezvous.actions import Action, Close, Send, SendUdp, StartSession
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.http_proxy import HttpProxy
from pyhbb.rendezvous.adapters.udp import UdpEndpoint
from pyhbb.rendezvous.links import Link, Transport
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.rendezvous.helpers import make_core
from tests.support.rdclient import UdpPeer


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlitePeerStore]:
    async with await SqliteDatabase.open(str(tmp_path / "db_v2.sqlite3")) as db:
        store = SqlitePeerStore(db)
        yield store
        await store.close()


def make_executor(store: SqlitePeerStore) -> Executor:
    core = make_core()
    loop = asyncio.get_running_loop()
    return Executor(core, store, loop.time, HttpProxy("http://127.0.0.1:9", 1024).handle)


async def open_udp(executor: Executor) -> tuple[asyncio.DatagramTransport, UdpEndpoint]:
    transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: UdpEndpoint(executor.core, executor), local_addr=("127.0.0.1", 0)
    )
    return transport, endpoint


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_unknown_action_is_refused_loudly_and_the_rest_still_runs(
    store: SqlitePeerStore, caplog: pytest.LogCaptureFixture
) -> None:
    executor = make_executor(store)
    transport, _ = await open_udp(executor)
    receiver = await UdpPeer.open(transport.get_extra_info("sockname"), "127.0.0.1")
    try:
        unknown = cast(Action, object())
        executor.run([unknown, SendUdp(b"after", receiver.addr)])
        assert (await asyncio.wait_for(receiver.proto.queue.get(), 3))[0] == b"after"
        assert executor.refused == 1
        (record,) = errors(caplog)
        assert "cannot perform" in record.getMessage() and "bug" in record.getMessage()
        # Every refusal is counted; a flood of them logs the 1st, 2nd, 4th ... only.
        executor.run([unknown, unknown, unknown])
        assert executor.refused == 4
        assert len(errors(caplog)) == 3
    finally:
        receiver.close()
        transport.close()


@pytest.mark.parametrize(
    "action",
    [
        lambda link: Send(link, b"x"),
        lambda link: Close(link),
        lambda link: StartSession(link, 20.0, 50.0),
    ],
)
async def test_a_link_that_is_no_connection_is_refused(
    store: SqlitePeerStore, caplog: pytest.LogCaptureFixture, action: Any
) -> None:
    executor = make_executor(store)
    executor.run([action(Link(("127.0.0.1", 1), Transport.TCP))])
    assert executor.refused == 1
    assert len(errors(caplog)) == 1


async def test_a_datagram_before_the_socket_opens_is_logged_and_counted(
    store: SqlitePeerStore, caplog: pytest.LogCaptureFixture
) -> None:
    executor = make_executor(store)
    receiver = await UdpPeer.open(("127.0.0.1", 9), "127.0.0.1")
    try:
        executor.run([SendUdp(b"early", receiver.addr)])
        assert executor.udp.before_open == 1
        (record,) = errors(caplog)
        assert "not open yet" in record.getMessage()
        transport, _ = await open_udp(executor)
        executor.run([SendUdp(b"on time", receiver.addr)])
        assert (await asyncio.wait_for(receiver.proto.queue.get(), 3))[0] == b"on time"
        assert executor.udp.before_open == 1
        assert executor.refused == 0
        transport.close()
    finally:
        receiver.close()
