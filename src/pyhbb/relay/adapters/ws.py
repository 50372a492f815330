"""WebSocket clients on port R+2 (§1.5, §2.4, §8.1): the opening handshake, one binary
RequestRelay message, then messages kept while waiting and forwarded once paired."""

from __future__ import annotations

import logging
import socket

from websockets.http11 import Request

from pyhbb.net.forwarded import client_addr
from pyhbb.net.websocket import TEXT, ServerWebSocket
from pyhbb.relay.adapters.base import ClientProtocol, Runner
from pyhbb.relay.conns import Addr, Kind, Phase
from pyhbb.relay.first_message import MAX_FIRST_MESSAGE
from pyhbb.relay.ws_bridge import MAX_MESSAGE, Bridge, ReadPause

log = logging.getLogger("pyhbb.relay")

# What a waiting client may send before its partner comes: kept, then forwarded; past
# either bound it is not read until paired.
WAIT_QUEUE_BYTES = 1024 * 1024
WAIT_QUEUE_MESSAGES = 64


class WsClient(ClientProtocol):
    """One WebSocket client connection on R+2."""

    __slots__ = ("_queue", "_queued", "_ws")

    def __init__(self, runner: Runner, sock: socket.socket, peer: Addr) -> None:
        super().__init__(runner, sock, peer, Kind.WS)
        self._queue: list[bytes] = []
        self._queued = 0

    def _opened(self) -> None:
        assert self._transport is not None
        # Small until the client has identified itself: no one makes us buffer 64 MiB
        # without a RequestRelay.
        self._ws = ServerWebSocket(self._transport, MAX_FIRST_MESSAGE)

    def data_received(self, data: bytes) -> None:
        events = self._ws.receive(data)
        payloads: list[bytes] = []
        for event in events:
            if self.bridge is not None:
                if type(event) is bytes:
                    payloads.append(event)
            elif isinstance(event, Request):
                self._on_request(event)
            elif self.phase is Phase.HANDSHAKE:
                if isinstance(event, bytes) or event is TEXT:
                    message = event if isinstance(event, bytes) else None
                    runner = self._runner
                    runner.run(runner.core.ws_message(self, message, runner.loop.time()))
            elif self.phase is Phase.WAITING and type(event) is bytes and event:
                self._queue.append(event)
                self._queued += len(event)
                if self._queued >= WAIT_QUEUE_BYTES or len(self._queue) >= WAIT_QUEUE_MESSAGES:
                    self.pause(ReadPause.WAITING)
        if self.bridge is not None and events:
            # Whole messages only count as activity: trickled bytes keep nothing open.
            self.bridge.forward(self, payloads)
        self._flush()

    def eof_received(self) -> None:
        self._ws.receive_eof()
        self._flush()

    def _on_request(self, request: Request) -> None:
        response = self._ws.accept(request)
        if response.status_code != 101:
            log.debug("%r: WebSocket handshake refused (%d)", self, response.status_code)
            return  # the protocol closes the connection after the response (_flush)
        runner = self._runner
        addr = client_addr(self.peer, request.headers, runner.trusted_proxies)
        runner.run(runner.core.ws_opened(self, addr, runner.loop.time()))

    def _flush(self) -> None:
        if self._ws.flush() and self._ws.close_expected():
            self._abort_later()  # we sent a close frame: the client should now close

    # -- actions ------------------------------------------------------------------------------

    def wait(self) -> None:
        super().wait()
        self._ws.max_size = MAX_MESSAGE

    def _close(self) -> None:
        t = self._transport
        assert t is not None
        if not self._ws.open:
            t.close()
            self._abort_later()
            return
        self._ws.send_close(1000)
        # Read on (and ignore) until the client's close frame completes the handshake.
        self.resume(ReadPause.WAITING | ReadPause.RATE | ReadPause.PEER | ReadPause.UNREAD)
        self._flush()

    # -- bridge end ---------------------------------------------------------------------------

    def attach(self, bridge: Bridge) -> list[bytes]:
        self.bridge = bridge
        self._ws.max_size = MAX_MESSAGE
        early, self._queue, self._queued = self._queue, [], 0
        self.resume(ReadPause.WAITING)
        return early

    def send_payloads(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            self._ws.send(payload)
