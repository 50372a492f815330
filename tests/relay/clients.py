"""RustDesk-like relay clients for the tests: raw TCP and WebSocket, any 127.x source."""

from __future__ import annotations

import asyncio
import socket

from websockets.asyncio.client import ClientConnection, connect

from pyhbb.wire.framing import encode_frame
from pyhbb.wire.rendezvous_pb2 import RendezvousMessage, RequestRelay


def request_relay(uuid: str, licence_key: str = "", peer_id: str = "") -> bytes:
    """The RequestRelay payload (A sends id too, B only uuid and key)."""
    msg = RendezvousMessage(
        request_relay=RequestRelay(uuid=uuid, licence_key=licence_key, id=peer_id)
    )
    return msg.SerializeToString()


async def tcp_connect(
    port: int, src: str = "127.0.0.2", host: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect from source address ``src`` (a different 127.x plays a different host)."""
    if host is None:
        host = "::1" if ":" in src else "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((src, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


async def tcp_relay_client(
    port: int,
    uuid: str,
    src: str = "127.0.0.2",
    licence_key: str = "",
    extra: bytes = b"",
    host: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and send framed RequestRelay, followed at once by ``extra`` raw bytes."""
    reader, writer = await tcp_connect(port, src, host)
    writer.write(encode_frame(request_relay(uuid, licence_key)) + extra)
    await writer.drain()
    return reader, writer


async def ws_relay_client(
    port: int,
    uuid: str,
    licence_key: str = "",
    src: str = "127.0.0.2",
    headers: dict[str, str] | None = None,
) -> ClientConnection:
    """Connect to ws://127.0.0.1:port from ``src`` and send RequestRelay as one message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((src, 0))
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws/relay",
        sock=sock,
        compression=None,
        max_size=None,
        additional_headers=headers,
        ping_interval=None,
    )
    await ws.send(request_relay(uuid, licence_key))
    return ws


async def read_exactly(reader: asyncio.StreamReader, n: int, timeout: float = 20.0) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 20.0) -> bool:
    """True once the server closes the connection (EOF or reset) without sending data."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b""
