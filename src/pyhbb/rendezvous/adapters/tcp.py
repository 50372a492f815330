"""TCP connections on P: frames in, frames out, with the optional secure channel (§6.5, §7.3)."""

from __future__ import annotations

import logging

from pyhbb.rendezvous.adapters.base import MAX_WRITE_BUFFER, AdapterContext, ProtocolLink
from pyhbb.rendezvous.links import Transport
from pyhbb.rendezvous.messages import parse
from pyhbb.rendezvous.rate_limits import TokenBucket
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_frame
from pyhbb.wire.secure_channel import HandshakeError, SecureSession, ServerHandshake

log = logging.getLogger("pyhbb.rendezvous")


class TcpLink(ProtocolLink):
    """One client TCP connection on P."""

    __slots__ = ("_bucket", "_decoder", "_handshake", "_session")
    kind = Transport.TCP

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self._handshake: ServerHandshake | None = None
        self._session: SecureSession | None = None

    def _opened(self) -> None:
        ctx = self._ctx
        self._decoder = FrameDecoder(ctx.max_frame)
        self._bucket = TokenBucket(1.0, ctx.message_burst, ctx.executor.clock())
        if ctx.secure_tcp and ctx.signing is not None:
            # The client's secure_tcp waits for this before it sends anything (§7.2).
            self._handshake = ServerHandshake(ctx.signing)
            self._transport.write(encode_frame(self._handshake.hello()))

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        decoder = self._decoder
        decoder.append(data)
        # One frame at a time: the limit grows once the secure channel is up, which may
        # happen in the middle of this chunk.
        while not self._closed:
            try:
                payload = decoder.next_frame()
            except FrameError as e:
                log.debug("%r: %s; closing", self, e)
                self._ctx.counts["error", "bad_frame"] += 1
                self.abort()
                return
            if payload is None:
                return
            # Only whole frames count as activity, like upstream's 30 s per frame read: a
            # client trickling a frame byte by byte cannot hold its connection open.
            self._idle.touch()
            self._on_payload(payload)

    # -- frames ---------------------------------------------------------------------------

    def _on_payload(self, payload: bytes) -> None:
        ctx = self._ctx
        now = ctx.executor.clock()
        if self._session is not None:
            try:
                payload = self._session.decrypt(payload)
            except HandshakeError as e:
                log.debug("%r: %s; closing", self, e)
                self._ctx.counts["error", "bad_encryption"] += 1
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
        counts = self._ctx.counts
        if msg is None or msg.WhichOneof("union") != "key_exchange":
            counts["handshake", "plaintext"] += 1
            return False  # a client that skipped secure_tcp: plaintext from here on
        try:
            self._session = handshake.finish(msg.key_exchange)
        except HandshakeError as e:
            log.debug("%r: bad KeyExchange (%s); closing", self, e)
            counts["handshake", "failed"] += 1
            self.abort()
            return True
        counts["handshake", "secure"] += 1
        self._decoder.max_payload = self._ctx.secure_max_frame
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
