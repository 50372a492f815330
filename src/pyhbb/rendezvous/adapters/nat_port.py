"""P-1: the second NAT-test endpoint and the online query; for loopback, the console.

One frame is read (30 s), answered and the connection closed (§6.12). A loopback
connection whose first bytes are console text is a console session instead (§9, "pyhbb
decision"), so a RustDesk client on the server machine itself can still use this port.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pyhbb.net.console_gate import (
    CONSOLE_READ_LIMIT,
    CONSOLE_READ_TIMEOUT,
    Verdict,
    classify,
    parse_command,
)
from pyhbb.net.hostport import is_loopback
from pyhbb.rendezvous.adapters.base import AdapterContext, ProtocolLink
from pyhbb.rendezvous.console import COMMANDS
from pyhbb.rendezvous.links import Transport
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_frame

log = logging.getLogger("pyhbb.rendezvous")


class NatPortLink(ProtocolLink):
    """One connection on P-1."""

    __slots__ = ("_answered", "_buf", "_decoder", "_mode")
    kind = Transport.NAT

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self._buf = b""
        self._mode: Verdict = Verdict.UNDECIDED
        self._answered = False

    def _opened(self) -> None:
        if self._ctx.console is None or not is_loopback(self.addr[0]):
            self._mode = Verdict.PROTOCOL
        self._decoder = FrameDecoder(self._ctx.max_frame)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._mode is Verdict.UNDECIDED:
            self._buf += data
            self._mode = classify(self._buf[:CONSOLE_READ_LIMIT], COMMANDS)
            if self._mode is Verdict.UNDECIDED:
                # a lone printable byte: a console "h" or half of a frame header
                self._idle.set_timeout(CONSOLE_READ_TIMEOUT)
                return
            data, self._buf = self._buf, b""
            if self._mode is Verdict.CONSOLE:
                self._run_console(data)
                return
        if self._mode is Verdict.CONSOLE or self._answered:
            return  # one read per console session, one frame per connection, as upstream
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            log.debug("%r: %s; closing", self, e)
            self.abort()
            return
        if frames:
            # the core's actions close the connection once answered (in cluster mode the
            # online answer comes after the other nodes')
            self._answered = True
            ctx = self._ctx
            ctx.executor.run(ctx.core.on_nat_frame(self, frames[0], ctx.executor.clock()))

    def _run_console(self, data: bytes) -> None:
        console = self._ctx.console
        assert console is not None
        self._idle.cancel()
        now, wall = self._ctx.executor.clock(), time.time()

        async def run() -> None:
            try:
                output = await console.execute(parse_command(data[:CONSOLE_READ_LIMIT]), now, wall)
            except Exception:  # a console bug must not leave the connection hanging
                log.exception("console command failed")
                output = ""
            if not self._transport.is_closing():
                self._transport.write(output.encode())
            self.close()

        asyncio.get_running_loop().create_task(run())

    def send_message(self, payload: bytes) -> None:
        if not self._closed:
            self._transport.write(encode_frame(payload))

    def start_session(self, heartbeat: float, timeout: float) -> None:
        """P-1 never carries registration sessions."""

    def _on_idle(self) -> None:
        if self._mode is Verdict.UNDECIDED and self._buf:
            self._mode = Verdict.CONSOLE  # only a console client sends one byte and waits
            self._run_console(self._buf)
            return
        self.close()
