"""Relaying when at least one side is a WebSocket (docs/protocol.md §2.4, §8.3).

Messages are forwarded one to one: a TCP frame's payload becomes one binary WebSocket
message and a binary message becomes one TCP frame. Text messages and empty payloads
(heartbeats) are not forwarded but count as activity. Each direction is a coroutine;
:func:`run_directions` runs two of them and stops both when either ends.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from pyhbb.relay.splice_pump import Budget
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_frame

RECV_SIZE = 256 * 1024


class Activity:
    """A counter the idle check watches; bumped for every message or chunk received."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def tcp_to_ws(
    sock: socket.socket,
    leftover: bytes,
    ws: Connection,
    budget: Budget,
    activity: Activity,
    max_payload: int,
) -> str:
    """Forward TCP frames from ``sock`` (after ``leftover``) as binary messages."""
    loop = asyncio.get_running_loop()
    decoder = FrameDecoder(max_payload)
    data = leftover
    while True:
        if data:
            activity.count += 1
            try:
                payloads = decoder.feed(data)
            except FrameError as e:
                return f"tcp: {e}"
            for payload in payloads:
                if not payload:
                    continue  # a TCP heartbeat: activity only
                delay = budget.consume(len(payload), loop.time())
                await ws.send(payload)
                if delay > 0:
                    await asyncio.sleep(delay)
        data = await loop.sock_recv(sock, RECV_SIZE)
        if not data:
            return "tcp: end of stream"


async def ws_to_tcp(ws: Connection, sock: socket.socket, budget: Budget, activity: Activity) -> str:
    """Forward binary messages from ``ws`` to ``sock`` as TCP frames."""
    loop = asyncio.get_running_loop()
    async for message in ws:
        activity.count += 1
        if isinstance(message, bytes) and message:
            delay = budget.consume(len(message), loop.time())
            await loop.sock_sendall(sock, encode_frame(message))
            if delay > 0:
                await asyncio.sleep(delay)
    return "websocket closed"


async def ws_to_ws(src: Connection, dst: Connection, budget: Budget, activity: Activity) -> str:
    """Forward binary messages from ``src`` to ``dst`` unchanged."""
    loop = asyncio.get_running_loop()
    async for message in src:
        activity.count += 1
        if isinstance(message, bytes) and message:
            delay = budget.consume(len(message), loop.time())
            await dst.send(message)
            if delay > 0:
                await asyncio.sleep(delay)
    return "websocket closed"


async def run_directions(one: Coroutine[Any, Any, str], other: Coroutine[Any, Any, str]) -> str:
    """Run both directions until either ends; return why. Cancelling this cancels both."""
    tasks = [asyncio.ensure_future(one), asyncio.ensure_future(other)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(iter(done))
    exc = first.exception()
    if exc is None:
        return first.result()
    if isinstance(exc, ConnectionClosed):
        return "websocket closed"
    if isinstance(exc, OSError):
        return f"socket error: {exc.strerror or exc}"
    raise exc
