"""WebSocket connections on P+2 (§1.5, §2.4), on the sans-IO protocol of ``websockets``
(through :mod:`pyhbb.net.websocket`, shared with hbbr).

Each binary message is one RendezvousMessage with no length header. Text messages only
count as activity. ``X-Real-IP``/``X-Forwarded-For`` are honoured from trusted proxies only.
"""

from __future__ import annotations

import logging

from websockets.http11 import Request

from pyhbb.net.forwarded import client_addr, in_networks
from pyhbb.net.websocket import ServerWebSocket
from pyhbb.rendezvous.adapters.base import (
    MAX_WRITE_BUFFER,
    WS_HANDSHAKE_TIMEOUT,
    ProtocolLink,
)
from pyhbb.rendezvous.links import Transport
from pyhbb.rendezvous.rate_limits import TokenBucket

log = logging.getLogger("pyhbb.rendezvous")


class WsLink(ProtocolLink):
    """One WebSocket client connection on P+2."""

    __slots__ = ("_bucket", "_ws")
    kind = Transport.WS

    def _limited_per_ip(self) -> bool:
        # A trusted reverse proxy carries many clients on its one address.
        return not in_networks(self.peer[0], self._ctx.trusted_proxies)

    def _first_timeout(self) -> float:
        # Upstream has no handshake timeout; a half-open handshake must not hold a slot.
        return WS_HANDSHAKE_TIMEOUT

    def _opened(self) -> None:
        ctx = self._ctx
        self._ws = ServerWebSocket(self._transport, ctx.max_frame)
        self._bucket = TokenBucket(1.0, ctx.message_burst, ctx.executor.clock())

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        for event in self._ws.receive(data):
            if self._closed:
                break
            self._idle.touch()  # whole frames only: trickled bytes keep nothing open
            if isinstance(event, Request):
                self._on_request(event)
            elif isinstance(event, bytes):
                self._on_message(event)  # text messages: activity only, never dispatched
        self._flush()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    # -- WebSocket events -----------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        response = self._ws.accept(request)
        if response.status_code != 101:
            log.debug("%r: WebSocket handshake refused (%d)", self, response.status_code)
            self._flush()
            self.close()
            return
        self.addr = client_addr(self.peer, request.headers, self._ctx.trusted_proxies)
        self.key = self.addr
        self._idle.set_timeout(self._ctx.idle_timeout)

    def _on_message(self, payload: bytes) -> None:
        ctx = self._ctx
        now = ctx.executor.clock()
        if not self._bucket.take(now):
            log.debug("%r: too many messages; closing", self)
            self.abort()
            return
        ctx.executor.run(ctx.core.on_frame(self, payload, now))

    def _flush(self) -> None:
        if self._transport.is_closing():
            return
        if not self._ws.flush() or self._ws.close_expected():
            self._closed = True
            self._transport.close()
        elif self._transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.abort()

    # -- IoLink ---------------------------------------------------------------------------

    def send_message(self, payload: bytes) -> None:
        if self._closed or not self._ws.open:
            return
        self._ws.send(payload)
        self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._ws.send_close(1000)
        self._ws.flush()
        self._closed = True
        self._transport.close()
