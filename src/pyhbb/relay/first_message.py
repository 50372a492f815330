"""A relay client's first message (§8.1), without I/O.

On TCP port R the first frame is split off the byte stream and the bytes after it are
kept verbatim (§8.3: once paired they are relayed as they are, and need not be frames).
A connection from loopback may instead be an admin console session (§9 "pyhbb
decision"): :class:`TcpFirstMessage` tells which from the first bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from google.protobuf.message import DecodeError

from pyhbb.net.console_gate import CONSOLE_READ_LIMIT, CONSOLE_READ_TIMEOUT, Verdict, classify
from pyhbb.net.console_gate import parse_command as parse_console_command
from pyhbb.relay import console
from pyhbb.wire.framing import FrameError, split_first_frame
from pyhbb.wire.rendezvous_pb2 import RendezvousMessage

MAX_FIRST_MESSAGE = 64 * 1024  # §2.1 recommendation for hbbr's first frame


def parse_request_relay(payload: bytes) -> tuple[str, str] | None:
    """``(uuid, licence_key)`` if ``payload`` is a RendezvousMessage with RequestRelay."""
    msg = RendezvousMessage()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        return None
    if msg.WhichOneof("union") != "request_relay":
        return None
    return msg.request_relay.uuid, msg.request_relay.licence_key


@dataclass(frozen=True, slots=True)
class FirstFrame:
    payload: bytes
    leftover: bytes  # whatever followed the frame in the same reads


@dataclass(frozen=True, slots=True)
class ConsoleCommand:
    args: list[str]


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


Outcome = FirstFrame | ConsoleCommand | Invalid


class TcpFirstMessage:
    """The bytes of one TCP connection on R until its first frame is complete, or (from
    loopback only) until they are known to be a console command."""

    __slots__ = ("_raw", "_undecided", "console_due")

    def __init__(self, console_possible: bool) -> None:
        self._raw = bytearray()
        self._undecided = console_possible
        self.console_due: float | None = None
        """While a lone printable byte may be a console command: when to run it."""

    def feed(self, data: bytes, now: float) -> Outcome | None:
        """Add bytes read from the connection; None while more are needed."""
        raw = self._raw
        raw += data
        if self._undecided:
            verdict = classify(bytes(raw[:CONSOLE_READ_LIMIT]), console.COMMANDS)
            if verdict is Verdict.CONSOLE:
                return self._console()
            if verdict is Verdict.UNDECIDED:
                # A single byte: a frame header or a one-letter command. The console
                # reads once with a 1 s timeout (§9), so wait that long for more.
                self.console_due = now + CONSOLE_READ_TIMEOUT
                return None
            self._undecided = False
            self.console_due = None
        try:
            # Bounded: a header announcing more than the limit raises at once. The buffer
            # is only indexed and sliced there, so it need not be copied to bytes first.
            split = split_first_frame(cast(bytes, raw), MAX_FIRST_MESSAGE)
        except FrameError as e:
            return Invalid(str(e))
        if split is None:
            return None
        payload, leftover = split
        return FirstFrame(bytes(payload), bytes(leftover))

    def end(self) -> ConsoleCommand | None:
        """At end of stream or at the deadline: the console command if the bytes so far
        can only be one, else None."""
        return self._console() if self._undecided and self._raw else None

    def _console(self) -> ConsoleCommand:
        return ConsoleCommand(parse_console_command(bytes(self._raw[:CONSOLE_READ_LIMIT])))
