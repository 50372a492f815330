"""TEST_HBBS: the official server's UDP self-test (docs/protocol.md §6.3, §10.2).

Once a second a RegisterPeer for the reserved id ``(:test_hbbs:)`` is sent to our own UDP
port. Upstream exits when no answer has come for more than 12 s. Under a flood the probes
are lost in a full receive buffer although the server is working (busy, not wedged), and
exiting would hand the attacker what it wants; so the socket's own progress decides: the
UDP path is wedged only when neither an answer nor any datagram at all reached the server
for 12 s. Then the process exits with status 1 so that a supervisor (systemd, Docker)
restarts it; while merely busy it says so in the log and keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from pyhbb.net.hostport import parse_host_port
from pyhbb.observability.throttle import worth_logging
from pyhbb.wire import rendezvous_pb2 as pb

log = logging.getLogger("pyhbb.rendezvous")

TEST_ID = "(:test_hbbs:)"
INTERVAL = 1.0
DEADLINE = 12.0
OK, BUSY, WEDGED = "ok", "busy", "wedged"


class SelfTest:
    """The verdict, without I/O: from the probe answers and the count of datagrams the
    server's UDP socket has delivered (``received``), both with injected time."""

    def __init__(self, now: float, received: int) -> None:
        self.last_answer = now
        self.last_progress = now
        self._received = received

    def answered(self, now: float) -> None:
        self.last_answer = now

    def check(self, now: float, received: int) -> str:
        if received != self._received:
            self._received = received
            self.last_progress = now
        if now - self.last_answer <= DEADLINE:
            return OK
        if now - self.last_progress <= DEADLINE:
            return BUSY  # datagrams still arrive and are handled: the probes were lost
        return WEDGED


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, test: SelfTest) -> None:
        self.test = test

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.test.answered(asyncio.get_running_loop().time())


def target(setting: str, port: int, bind: str | None) -> tuple[str, int] | None:
    """Where to send the probe: ``None`` when disabled (``TEST_HBBS=no``)."""
    if setting.lower() == "no":
        return None
    if setting:
        return parse_host_port(setting, port)
    host = "::1" if bind and ":" in bind else "127.0.0.1"
    if bind and bind not in ("0.0.0.0", "::"):
        host = bind
    return host, port


async def run(
    dest: tuple[str, int],
    on_failure: Callable[[], None],
    received: Callable[[], int] = lambda: 0,
    on_verdict: Callable[[str], None] = lambda verdict: None,
) -> None:
    """Probe ``dest`` until the UDP path is wedged, then call ``on_failure`` (which stops
    the server cleanly with exit status 1) and return. ``received`` counts the datagrams
    the server's socket has delivered so far (without it, only answers count);
    ``on_verdict`` hears each verdict (the health check shows the latest)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
    test = SelfTest(loop.time(), received())
    transport, _ = await loop.create_datagram_endpoint(lambda: _Probe(test), family=family)
    payload = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=TEST_ID)).SerializeToString()
    busy = 0
    try:
        while True:
            transport.sendto(payload, dest)
            await asyncio.sleep(INTERVAL)
            verdict = test.check(loop.time(), received())
            on_verdict(verdict)
            if verdict == WEDGED:
                log.error(
                    "UDP self-test: no answer and no datagram received for %.0f s; "
                    "exiting for a restart",
                    DEADLINE,
                )
                on_failure()
                return
            if verdict == BUSY:
                busy += 1
                if worth_logging(busy):
                    log.warning(
                        "UDP self-test unanswered for %.0f s while datagrams keep arriving: "
                        "overloaded (a flood?), not wedged; still serving",
                        loop.time() - test.last_answer,
                    )
            else:
                busy = 0
    finally:
        transport.close()
