"""WebSocket connections on P+2 (§1.5, §2.4), on the sans-IO protocol of ``websockets``.

Each binary message is one RendezvousMessage with no length header. Text messages only
count as activity. ``X-Real-IP``/``X-Forwarded-For`` are honoured from trusted proxies only.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from pyhbb.net.forwarded import client_addr, in_networks
from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.adapters.base import (
    MAX_WRITE_BUFFER,
    WS_HANDSHAKE_TIMEOUT,
    AdapterContext,
    ProtocolLink,
)
from pyhbb.rendezvous.links import Transport
from pyhbb.rendezvous.rate_limits import TokenBucket

log = logging.getLogger("pyhbb.rendezvous")


class _LibraryLog(logging.LoggerAdapter[logging.Logger]):
    """What the websockets library logs for hbbs. It says "connection open", "connection
    closed" or "connection rejected" at INFO for every connection, which any client can
    repeat thousands of times: those go to DEBUG; its warnings and errors are throttled
    per message (1st, 2nd, 4th ...)."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("pyhbb.rendezvous.websocket"))
        self._counts: dict[str, int] = {}  # keyed by the library's fixed format strings

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            level = logging.DEBUG
        else:
            key = str(msg)
            n = self._counts.get(key)
            if n is None and len(self._counts) >= 256:
                return
            n = (n or 0) + 1
            self._counts[key] = n
            if not worth_logging(n):
                return
        super().log(level, msg, *args, **kwargs)


LIBRARY_LOG = _LibraryLog()


class WsLink(ProtocolLink):
    """One WebSocket client connection on P+2."""

    __slots__ = ("_bucket", "_fragments", "_open", "_ws")
    kind = Transport.WS

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self._open = False
        self._fragments: list[bytes] | None = None

    def _limited_per_ip(self) -> bool:
        # A trusted reverse proxy carries many clients on its one address.
        return not in_networks(self.peer[0], self._ctx.trusted_proxies)

    def _first_timeout(self) -> float:
        # Upstream has no handshake timeout; a half-open handshake must not hold a slot.
        return WS_HANDSHAKE_TIMEOUT

    def _opened(self) -> None:
        ctx = self._ctx
        self._ws = ServerProtocol(max_size=ctx.max_frame, logger=LIBRARY_LOG)
        self._bucket = TokenBucket(1.0, ctx.message_burst, ctx.executor.clock())

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if self._closed:
                break
            self._idle.touch()  # whole frames only: trickled bytes keep nothing open
            if isinstance(event, Request):
                self._on_request(event)
            elif isinstance(event, Frame):
                self._on_frame(event)
        self._flush()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    # -- WebSocket events -----------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        response = self._ws.accept(request)
        self._ws.send_response(response)
        if response.status_code != 101:
            log.debug("%r: WebSocket handshake refused (%d)", self, response.status_code)
            self._flush()
            self.close()
            return
        self.addr = client_addr(self.peer, request.headers, self._ctx.trusted_proxies)
        self.key = self.addr
        self._open = True
        self._idle.set_timeout(self._ctx.idle_timeout)

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(bytes(frame.data))
            else:
                self._fragments = [bytes(frame.data)]
        elif frame.opcode is Opcode.CONT and self._fragments is not None:
            # websockets bounds the total size of a fragmented message by max_size.
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = None
                self._on_message(data)
        elif frame.opcode is Opcode.TEXT and not frame.fin:
            self._fragments = None  # text: activity only, never dispatched

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
        for chunk in self._ws.data_to_send():
            if chunk:
                self._transport.write(chunk)
            else:  # the protocol asks for end of stream after the closing handshake
                self._closed = True
                self._transport.close()
                return
        if self._ws.close_expected() or self._ws.state is State.CLOSED:
            self._closed = True
            self._transport.close()
        elif self._transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.abort()

    # -- IoLink ---------------------------------------------------------------------------

    def send_message(self, payload: bytes) -> None:
        if self._closed or not self._open or self._ws.state is not State.OPEN:
            return
        self._ws.send_binary(payload)
        self._flush()

    def close(self) -> None:
        if self._closed:
            return
        if self._open and self._ws.state is State.OPEN:
            self._ws.send_close(1000)
            for chunk in self._ws.data_to_send():
                if chunk:
                    self._transport.write(chunk)
        self._closed = True
        self._transport.close()
