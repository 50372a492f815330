"""TCP connections on P: frames in, frames out, with the optional secure channel (§6.5, §7.3)."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from pyhbb.net.sockets import set_nodelay
from pyhbb.rendezvous.adapters.base import MAX_WRITE_BUFFER, AdapterContext, IoLink
from pyhbb.rendezvous.adapters.idle import HeartbeatTimer, IdleTimer, MessageBucket
from pyhbb.rendezvous.links import Transport
from pyhbb.rendezvous.messages import parse
from pyhbb.wire.addr_mangle import normalize
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_frame
from pyhbb.wire.secure_channel import HandshakeError, SecureSession, ServerHandshake

log = logging.getLogger("pyhbb.rendezvous")


class TcpLink(asyncio.Protocol, IoLink):
    """One client TCP connection on P."""

    __slots__ = (
        "_beat",
        "_bucket",
        "_closed",
        "_ctx",
        "_decoder",
        "_handshake",
        "_idle",
        "_registered",
        "_session",
        "_transport",
    )

    def __init__(self, ctx: AdapterContext) -> None:
        self._ctx = ctx
        self._closed = True
        self._registered = False
        self._beat: HeartbeatTimer | None = None
        self._handshake: ServerHandshake | None = None
        self._session: SecureSession | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ctx = self._ctx
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        IoLink.__init__(self, normalize(peer), Transport.TCP)
        if not ctx.limiter.acquire(self.addr[0]):
            self._transport.abort()
            return
        self._registered = True
        self._closed = False
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_nodelay(sock)
        ctx.links.add(self)
        loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder(ctx.max_frame)
        self._bucket = MessageBucket(ctx.message_burst, loop.time())
        self._idle = IdleTimer(ctx.idle_timeout, self._on_idle)
        if ctx.secure_tcp and ctx.signing is not None:
            # The client's secure_tcp waits for this before it sends anything (§7.2).
            self._handshake = ServerHandshake(ctx.signing)
            self._transport.write(encode_frame(self._handshake.hello()))

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._idle.touch()
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            log.debug("%r: %s; closing", self, e)
            self.abort()
            return
        for payload in frames:
            if self._closed:
                return
            self._on_payload(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._registered:
            return
        self._registered = False
        self._closed = True
        self._idle.cancel()
        if self._beat is not None:
            self._beat.cancel()
        ctx = self._ctx
        ctx.limiter.release(self.addr[0])
        ctx.links.discard(self)
        ctx.core.on_link_closed(self, ctx.executor.clock())

    # -- frames ---------------------------------------------------------------------------

    def _on_payload(self, payload: bytes) -> None:
        ctx = self._ctx
        now = ctx.executor.clock()
        if self._session is not None:
            try:
                payload = self._session.decrypt(payload)
            except HandshakeError as e:
                log.debug("%r: %s; closing", self, e)
                self.abort()
                return
        elif self._handshake is not None and payload and self._finish_handshake(payload):
            return  # the client's KeyExchange is not a request
        if not self._bucket.take(now):
            log.debug("%r: too many messages; closing", self)
            self.abort()
            return
        ctx.executor.run(ctx.core.on_frame(self, payload, now))

    def _finish_handshake(self, payload: bytes) -> bool:
        """Decide the connection's mode from its first non-empty frame (§7.3).

        Returns True when the frame was the client's KeyExchange (consumed here)."""
        handshake, self._handshake = self._handshake, None
        assert handshake is not None
        msg = parse(payload)
        if msg is None or msg.WhichOneof("union") != "key_exchange":
            return False  # a client that skipped secure_tcp: plaintext from here on
        try:
            self._session = handshake.finish(msg.key_exchange)
        except HandshakeError as e:
            log.debug("%r: bad KeyExchange (%s); closing", self, e)
            self.abort()
            return True
        log.debug("%r: secure channel established", self)
        return True

    # -- IoLink ---------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        return self._session is not None

    def send_message(self, payload: bytes) -> None:
        if self._closed:
            return
        if self._session is not None:
            payload = self._session.encrypt(payload)
        self._transport.write(encode_frame(payload))
        if self._transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.debug("%r: client does not read; closing", self)
            self.abort()

    def start_session(self, heartbeat: float, timeout: float) -> None:
        if self._beat is None and not self._closed:
            self._idle.set_timeout(timeout)
            self._beat = HeartbeatTimer(heartbeat, lambda: self.send_message(b""))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    def abort(self) -> None:
        self._closed = True
        self._transport.abort()

    def _on_idle(self) -> None:
        log.debug("%r: idle for %.0f s; closing", self, self._idle.timeout)
        self.close()
