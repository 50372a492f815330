"""RustDesk-like clients for tests and benchmarks: they speak to hbbs exactly as the real
client does (docs/protocol.md §6, §7): UDP registration, framed TCP with the optional secure
handshake, WebSocket binary messages."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from dataclasses import dataclass

from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import VerifyKey
from websockets.asyncio.client import ClientConnection, connect

from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import FrameDecoder, encode_frame
from pyhbb.wire.secure_channel import SecureSession

Msg = pb.RendezvousMessage


def parse(data: bytes) -> Msg:
    msg = Msg()
    msg.ParseFromString(data)
    return msg


# -- UDP (the controlled side B registering) ---------------------------------------------


class _UdpProto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        host = addr[0]
        assert isinstance(host, str)
        self.queue.put_nowait((data, (host, addr[1])))


class UdpPeer:
    """A UDP socket bound to ``local`` (e.g. 127.0.0.2 to play another host)."""

    def __init__(
        self, transport: asyncio.DatagramTransport, proto: _UdpProto, server: tuple[str, int]
    ):
        self.transport = transport
        self.proto = proto
        self.server = server

    @classmethod
    async def open(cls, server: tuple[str, int], local: str = "127.0.0.1") -> UdpPeer:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
        transport, proto = await loop.create_datagram_endpoint(
            _UdpProto, local_addr=(local, 0), family=family
        )
        return cls(transport, proto, server)

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, msg: Msg) -> None:
        self.transport.sendto(msg.SerializeToString(), self.server)

    def send_raw(self, data: bytes) -> None:
        self.transport.sendto(data, self.server)

    async def recv(self, timeout: float = 3.0) -> Msg:
        data, _ = await asyncio.wait_for(self.proto.queue.get(), timeout)
        return parse(data)

    async def recv_kind(self, kind: str, timeout: float = 3.0) -> Msg:
        """The next message of ``kind``, skipping others (e.g. ConfigUpdate)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg.WhichOneof("union") == kind:
                    return msg

    async def nothing(self, wait: float = 0.3) -> bool:
        """True if no datagram arrives within ``wait`` seconds."""
        try:
            await asyncio.wait_for(self.proto.queue.get(), wait)
        except TimeoutError:
            return True
        return False

    async def register_pk(self, peer_id: str, uuid: bytes, pk: bytes) -> int:
        self.send(Msg(register_pk=pb.RegisterPk(id=peer_id, uuid=uuid, pk=pk)))
        return (await self.recv_kind("register_pk_response")).register_pk_response.result

    async def register_peer(self, peer_id: str, serial: int = 3) -> bool:
        self.send(Msg(register_peer=pb.RegisterPeer(id=peer_id, serial=serial)))
        return (await self.recv_kind("register_peer_response")).register_peer_response.request_pk

    async def register(
        self, peer_id: str, uuid: bytes | None = None, pk: bytes | None = None
    ) -> None:
        """The real client's first registration: RegisterPeer, RegisterPk on request_pk."""
        uuid = uuid or os.urandom(8).hex().encode()
        pk = pk or os.urandom(32)
        if await self.register_peer(peer_id):
            result = await self.register_pk(peer_id, uuid, pk)
            assert result == pb.RegisterPkResponse.OK, result
        assert not await self.register_peer(peer_id)

    def close(self) -> None:
        self.transport.close()


# -- TCP (framed, optionally secured) -------------------------------------------------------


@dataclass
class TcpClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    decoder: FrameDecoder
    session: SecureSession | None = None
    pending: list[bytes] | None = None

    @classmethod
    async def connect(
        cls, server: tuple[str, int], local: str | None = None, local_port: int = 0
    ) -> TcpClient:
        local_addr = (local, local_port) if local is not None else None
        if local_port:
            # The NAT test reuses one local port for two connections (SO_REUSEADDR).
            family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((local or "", local_port))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, server)
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection(*server, local_addr=local_addr)
        return cls(reader, writer, FrameDecoder(1 << 24), pending=[])

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return host, port

    def send(self, msg: Msg) -> None:
        self.send_payload(msg.SerializeToString())

    def send_payload(self, payload: bytes) -> None:
        if self.session is not None:
            payload = self.session.encrypt(payload)
        self.writer.write(encode_frame(payload))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv_payload(self, timeout: float = 3.0) -> bytes:
        """The next frame's payload (decrypted); raises EOFError when the server closed."""
        assert self.pending is not None
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.pending.extend(self.decoder.feed(data))
        payload = self.pending.pop(0)
        if self.session is not None:
            payload = self.session.decrypt(payload)
        return payload

    async def recv(self, timeout: float = 3.0) -> Msg:
        return parse(await self.recv_payload(timeout))

    async def recv_nonkeyexchange(self, timeout: float = 3.0) -> Msg:
        """The client's ``get_next_nonkeyexchange_msg``: skip one unsolicited KeyExchange."""
        for _ in range(2):
            msg = await self.recv(timeout)
            if msg.WhichOneof("union") != "key_exchange":
                return msg
        raise AssertionError("two KeyExchange messages in a row")

    async def secure(self, server_pk_b64: str, timeout: float = 3.0) -> None:
        """The client side of secure_tcp (§7.3): verify, answer, switch on encryption."""
        first = await self.recv(timeout)
        assert first.WhichOneof("union") == "key_exchange", first
        (signed,) = first.key_exchange.keys
        box_pk = VerifyKey(base64.b64decode(server_pk_b64)).verify(signed)
        mine = PrivateKey.generate()
        key = os.urandom(32)
        sealed = Box(mine, PublicKey(box_pk)).encrypt(key, bytes(24)).ciphertext
        self.send(Msg(key_exchange=pb.KeyExchange(keys=[bytes(mine.public_key), sealed])))
        self.session = SecureSession(key)

    async def closed(self, timeout: float = 3.0) -> bool:
        """True once the server has closed (EOF or reset) without sending anything but an
        unsolicited KeyExchange; False on timeout or on any other message."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
                    for payload in self.decoder.feed(data):
                        if parse(payload).WhichOneof("union") != "key_exchange":
                            return False
        except ConnectionError:  # reset by the server, or our own write hit the closed socket
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


# -- WebSocket -------------------------------------------------------------------------------


@dataclass
class WsClient:
    ws: ClientConnection

    @classmethod
    async def connect(
        cls,
        server: tuple[str, int],
        path: str = "/ws/id",
        headers: dict[str, str] | None = None,
        local: str | None = None,
    ) -> WsClient:
        host, port = server
        uri = f"ws://{host}:{port}{path}"
        kwargs: dict[str, object] = {"additional_headers": headers or {}}
        if local is not None:
            kwargs["local_addr"] = (local, 0)
        ws = await connect(uri, open_timeout=5, ping_interval=None, compression=None, **kwargs)  # type: ignore[arg-type]
        return cls(ws)

    async def send(self, msg: Msg) -> None:
        await self.ws.send(msg.SerializeToString())

    async def recv(self, timeout: float = 3.0) -> Msg:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, bytes)
        return parse(data)

    async def close(self) -> None:
        await self.ws.close()
