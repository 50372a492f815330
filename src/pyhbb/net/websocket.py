"""The server side of a WebSocket connection on an asyncio transport (§1.5, §2.4).

hbbs (P+2) and hbbr (R+2) both run their WebSocket clients as asyncio ``Protocol``s
that feed bytes to websockets' sans-IO :class:`~websockets.server.ServerProtocol`.
:class:`ServerWebSocket` is that integration: bytes in, events out (the handshake
request, whole binary messages, text messages, other frames), bytes written to the
transport, and the transport closed when the WebSocket protocol says so. What a message
means, limits on what a client may send, and back-pressure stay with the caller.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from pyhbb.observability.throttle import worth_logging

MAX_KINDS = 256


class _WarningsOnly(logging.LoggerAdapter[logging.Logger]):
    """The library logs "connection open"/"connection closed" (INFO) and every frame
    (DEBUG) per connection: lines any client can trigger at will. Only its warnings and
    errors get through, each kind (the library's fixed format string) at its 1st, 2nd,
    4th ... occurrence; ``self.debug`` in the library is then False, which also spares
    it formatting frames."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger)
        self._counts: dict[str, int] = {}

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            return
        key = str(msg)
        n = self._counts.get(key)
        if n is None and len(self._counts) >= MAX_KINDS:
            return  # bounded: the library has far fewer distinct messages than this
        n = (n or 0) + 1
        self._counts[key] = n
        if worth_logging(n):
            super().log(level, msg, *args, **kwargs)


PROTOCOL_LOGGER = _WarningsOnly(logging.getLogger("pyhbb.net.websocket"))


class TextMessage:
    """Marker event: a text message ended (its content is never used, §2.4)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TEXT"


TEXT = TextMessage()

Event = Request | bytes | TextMessage | None
"""What :meth:`ServerWebSocket.receive` yields: the handshake request, a whole binary
message, :data:`TEXT`, or ``None`` for any other frame (control frames, a fragment of an
unfinished message). Every event is a sign of life from the client."""


class ServerWebSocket:
    """One server-side WebSocket over ``transport``; messages up to ``max_size`` bytes."""

    __slots__ = ("_fragments", "_text", "_transport", "_ws", "open")

    def __init__(self, transport: asyncio.Transport, max_size: int) -> None:
        self._transport = transport
        self._ws = ServerProtocol(max_size=max_size, logger=PROTOCOL_LOGGER)
        self._fragments: list[bytes] | None = None
        self._text = False
        self.open = False
        """True once the handshake succeeded (and until the connection ends)."""

    @property
    def state(self) -> State:
        return self._ws.state

    @property
    def max_size(self) -> int | None:
        return self._ws.max_message_size

    @max_size.setter
    def max_size(self, size: int) -> None:
        """Change the message size limit, e.g. once a client has identified itself."""
        self._ws.max_message_size = size

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes read from the transport; return the events they completed."""
        self._ws.receive_data(data)
        return [self._event(e) for e in self._ws.events_received()]

    def receive_eof(self) -> None:
        self._ws.receive_eof()

    def _event(self, event: Request | Response | Frame) -> Event:
        if not isinstance(event, Frame):
            return event if isinstance(event, Request) else None  # (Response: client side)
        opcode = event.opcode
        if opcode is Opcode.BINARY:
            if event.fin:
                return bytes(event.data)
            self._fragments = [bytes(event.data)]
        elif opcode is Opcode.CONT:
            if self._fragments is not None:
                # websockets bounds the total size of a fragmented message by max_size.
                self._fragments.append(bytes(event.data))
                if event.fin:
                    data = b"".join(self._fragments)
                    self._fragments = None
                    return data
            elif self._text and event.fin:
                self._text = False
                return TEXT
        elif opcode is Opcode.TEXT:
            if event.fin:
                return TEXT
            self._text = True
        return None

    def accept(self, request: Request) -> Response:
        """Answer the opening handshake: status 101, or an error after which the
        connection closes."""
        response = self._ws.accept(request)
        self._ws.send_response(response)
        self.open = response.status_code == 101
        return response

    def send(self, payload: bytes) -> None:
        """Write one binary message now (after anything the protocol had to send)."""
        if not self.open or self._ws.state is not State.OPEN or self._transport.is_closing():
            return
        # A server frame is never masked and no extension is negotiated: the frame is a
        # header and the payload as it is, written without copying it (RFC 6455 §5.2).
        n = len(payload)
        if n < 126:
            header = bytes((0x82, n))
        elif n < 0x10000:
            header = b"\x82\x7e" + n.to_bytes(2, "big")
        else:
            header = b"\x82\x7f" + n.to_bytes(8, "big")
        pending = self._ws.data_to_send()  # e.g. a pong: it goes first
        self._transport.writelines([*pending, header, payload])

    def send_close(self, code: int = 1000) -> None:
        """Start the closing handshake (then :meth:`close_expected` is True)."""
        if self.open and self._ws.state is State.OPEN:
            self._ws.send_close(code)
        self.open = False

    def close_expected(self) -> bool:
        """True when the client should now close the TCP connection (we sent a close
        frame, or the handshake failed): the caller closes it after a grace period."""
        return self._ws.close_expected()

    def flush(self) -> bool:
        """Write what the protocol has to send, and close the transport once the protocol
        is done with the connection. Returns False when the transport is closing."""
        transport = self._transport
        if transport.is_closing():
            return False
        chunks = self._ws.data_to_send()
        if chunks:
            eof = not chunks[-1]  # end of stream, once the closing handshake is complete
            if eof:
                chunks.pop()
            if chunks:
                transport.writelines(chunks)  # one gathered write
            if eof:
                transport.close()
                return False
        if self._ws.state is State.CLOSED:
            transport.close()
            return False
        return True
