"""ServerWebSocket on a real loopback connection, driven by the websockets client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import cast

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from pyhbb.net.websocket import TEXT, Event, ServerWebSocket

pytestmark = pytest.mark.timeout(30)


class Server(asyncio.Protocol):
    """Accepts the handshake and records every event; the test drives the rest."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.events: list[Event] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.ws = ServerWebSocket(self.transport, self.max_size)

    def data_received(self, data: bytes) -> None:
        for event in self.ws.receive(data):
            if isinstance(event, Request):
                self.ws.accept(event)
            self.events.append(event)
            self.arrived.set()
        self.ws.flush()

    def eof_received(self) -> None:
        self.ws.receive_eof()
        self.ws.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)

    async def next_events(self, count: int) -> list[Event]:
        while len(self.events) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        taken, self.events = self.events[:count], self.events[count:]
        return taken


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Server, ClientConnection]]:
    servers: list[Server] = []

    def factory() -> Server:
        servers.append(Server(max_size=1000))
        return servers[-1]

    listener = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = await connect(f"ws://127.0.0.1:{port}/any/path", compression=None)
    yield servers[0], client
    await client.close()
    listener.close()


async def test_events(pair: tuple[Server, ClientConnection]) -> None:
    server, client = pair
    (request,) = await server.next_events(1)
    assert isinstance(request, Request) and server.ws.open
    await client.send(b"binary")
    await client.send("text")
    await client.send([b"frag", b"mented"])  # one message: two frames and an empty final one
    await client.ping()
    events = await server.next_events(6)
    assert events == [b"binary", TEXT, None, None, b"fragmented", None]
    await client.send(["te", "xt in parts"])
    assert await server.next_events(3) == [None, None, TEXT]  # (an empty final frame)


async def test_send_and_close(pair: tuple[Server, ClientConnection]) -> None:
    server, client = pair
    await server.next_events(1)
    server.ws.send(b"to the client")
    assert server.ws.flush()
    assert await asyncio.wait_for(client.recv(), 10) == b"to the client"
    server.ws.send_close(1000)
    assert server.ws.flush() and server.ws.close_expected()
    server.ws.send(b"after close: dropped")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert await asyncio.wait_for(server.lost, 10) is None  # closed when the client answered


async def test_message_size_limit_can_be_raised(pair: tuple[Server, ClientConnection]) -> None:
    server, client = pair
    await server.next_events(1)
    server.ws.max_size = 5000
    await client.send(b"x" * 4000)
    assert await server.next_events(1) == [b"x" * 4000]
    await client.send(b"x" * 6000)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # too big


async def test_refused_handshake_closes() -> None:
    loop = asyncio.get_running_loop()
    servers: list[Server] = []

    def factory() -> Server:
        servers.append(Server(max_size=1000))
        return servers[-1]

    listener = await loop.create_server(factory, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not an upgrade
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 426") and not servers[0].ws.open
    writer.close()
    listener.close()


async def test_library_logs_nothing_per_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Server(1000), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    for _ in range(20):
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as client:
            await client.send(b"hello")
    listener.close()
    server_side = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert server_side == [], [(r.name, r.getMessage()) for r in server_side]
