"""A wedged hbbs/hbbr (accepts, never answers) costs one timeout, not one per page; a
refused connection costs nothing and is asked again at once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from pyhbb.api.backoff import TimeoutBackoff
from pyhbb.api.console.servers import ConsoleUnavailable, ServerConsole
from pyhbb.api.presence import HbbsPresence

TIMEOUT = 0.3


def test_backoff_states() -> None:
    b = TimeoutBackoff(period=10.0)
    assert b.wait_left(100.0) == 0.0
    b.timed_out(100.0)
    assert b.wait_left(100.0) == 10.0
    assert b.wait_left(104.0) == 6.0
    assert b.wait_left(110.0) == 0.0
    b.timed_out(120.0)
    b.answered()
    assert b.wait_left(120.0) == 0.0


class Listener:
    """A real loopback TCP server that counts connections and answers with ``answer``
    after reading a line, or never answers (``answer`` None): a wedged loop."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.accepted = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await reader.readline()
            if self.answer is None:
                await reader.read()  # until the client gives up
            else:
                writer.write(self.answer)
                await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def listening(listener: Listener, port: int = 0) -> AsyncIterator[int]:
    server = await asyncio.start_server(listener.handle, "127.0.0.1", port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_console_fails_fast_after_a_timeout_and_asks_again_later() -> None:
    silent = Listener(None)
    async with listening(silent) as port:
        console = ServerConsole("hbbs", "127.0.0.1", port, timeout=TIMEOUT)
        console.backoff = TimeoutBackoff(period=0.5)
        timed_out = r"did not answer on 127\.0\.0\.1:\d+ \(no answer within 0\.3 s\)"
        with pytest.raises(ConsoleUnavailable, match=timed_out):
            await console.run("relay-servers")
        assert silent.accepted == 1
        # within the period: no connection at all, and the page is told why
        with pytest.raises(ConsoleUnavailable, match=r"a moment ago; asking again in 1 s"):
            await console.run("relay-servers")
        assert silent.accepted == 1
        await asyncio.sleep(0.6)
        with pytest.raises(ConsoleUnavailable, match=timed_out):
            await console.run("relay-servers")
        assert silent.accepted == 2


async def test_console_asks_again_at_once_after_a_refusal() -> None:
    port = free_port()
    console = ServerConsole("hbbr", "127.0.0.1", port, timeout=TIMEOUT)
    with pytest.raises(ConsoleUnavailable, match="did not answer"):
        await console.run("usage")  # nothing listens: refused
    answering = Listener(b"ok\n")
    async with listening(answering, port):
        assert await console.run("usage") == "ok\n"  # the server is back: no waiting
    assert answering.accepted == 1


async def test_presence_is_unknown_at_once_after_a_timeout() -> None:
    silent = Listener(None)
    async with listening(silent) as port:
        presence = HbbsPresence("127.0.0.1", port, timeout=TIMEOUT)
        assert await presence.online(["device01"]) is None
        assert silent.accepted == 1
        assert await presence.online(["device01"]) is None
        assert silent.accepted == 1  # not asked again within the period
        presence.backoff.answered()  # as after the period: the next page asks
        assert await presence.online(["device01"]) is None
        assert silent.accepted == 2
