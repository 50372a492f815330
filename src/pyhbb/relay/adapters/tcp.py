"""TCP clients on port R (§8.1, §8.3, §9): first frame or console command, then either
raw pass-through (the socket goes to the splice pump) or frames to a WebSocket partner."""

from __future__ import annotations

import os
import socket

from pyhbb.net.sockets import is_loopback
from pyhbb.relay.adapters.base import ClientProtocol, Runner
from pyhbb.relay.conns import Addr, Kind, Phase
from pyhbb.relay.ws_bridge import MAX_MESSAGE, Bridge, ReadPause
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_header


class TcpClient(ClientProtocol):
    """One TCP client connection on R."""

    __slots__ = ("_decoder",)

    def __init__(self, runner: Runner, sock: socket.socket, peer: Addr) -> None:
        super().__init__(runner, sock, peer, Kind.TCP, is_loopback(peer[0]))
        self._decoder: FrameDecoder | None = None  # once bridged

    def data_received(self, data: bytes) -> None:
        if self.bridge is not None:
            assert self._decoder is not None
            try:
                payloads = self._decoder.feed(data)
            except FrameError as e:
                self.bridge.close(f"tcp: {e}")
                return
            self.bridge.forward(self, payloads)
        elif self.phase is Phase.HANDSHAKE:
            runner = self._runner
            runner.run(runner.core.tcp_data(self, data, runner.loop.time()))
        elif self.phase is Phase.WAITING:  # read before reading stopped: relayed later
            self.leftover += data
            self.pause(ReadPause.WAITING)

    def eof_received(self) -> bool:
        if self.bridge is not None:
            self.bridge.close("tcp: end of stream")
        elif self.phase is Phase.HANDSHAKE:
            runner = self._runner
            runner.run(runner.core.tcp_eof(self, runner.loop.time()))
        # Keep the transport: whatever happened above closes it, after a console reply
        # is written; a waiting client's end of stream is seen by its partner.
        return True

    # -- actions ------------------------------------------------------------------------------

    def wait(self) -> None:
        super().wait()
        # Not read until paired: its bytes wait in the kernel, which pushes back on the
        # client, and are relayed (or spliced) in order once the partner comes.
        self.pause(ReadPause.WAITING)

    def reply(self, text: str) -> None:
        """Write a console command's output and close."""
        self._cancel_deadline()
        if self._transport is None:
            return
        if text:
            self._transport.write(text.encode())
        self._close()

    def detach(self) -> socket.socket:
        """Take the socket away from the transport (for the splice pump): the transport
        gets a duplicate descriptor closed, so the connection itself is not touched (no
        FIN, no RST) and nothing already read is lost (the core kept it as leftover).
        Raises OSError (e.g. EMFILE); the connection then stays with the transport."""
        t = self._transport
        assert t is not None
        t.pause_reading()
        fd = os.dup(t.get_extra_info("socket").fileno())
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        t.abort()
        self._transport = None  # the session outlives it: do not keep it alive
        return sock

    # -- bridge end ---------------------------------------------------------------------------

    def attach(self, bridge: Bridge) -> list[bytes]:
        self.bridge = bridge
        self._decoder = FrameDecoder(MAX_MESSAGE)
        early, self.leftover = self.leftover, b""
        self.resume(ReadPause.WAITING)
        return self._decoder.feed(early)

    def send_payloads(self, payloads: list[bytes]) -> None:
        t = self._transport
        if t is not None and not t.is_closing():
            # One gathered write for the batch; payloads are not copied to add headers.
            t.writelines([part for p in payloads for part in (encode_header(len(p)), p)])
