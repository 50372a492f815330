"""TEST_HBBS: the official server's UDP self-test (docs/protocol.md §6.3, §10.2).

Once a second a RegisterPeer for the reserved id ``(:test_hbbs:)`` is sent to our own UDP
port; when no answer has come for more than 12 s the UDP path is wedged and the process
exits with status 1 so that a supervisor (systemd, Docker) restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from pyhbb.rendezvous.relay_servers import with_port
from pyhbb.wire import rendezvous_pb2 as pb

log = logging.getLogger("pyhbb.rendezvous")

TEST_ID = "(:test_hbbs:)"
INTERVAL = 1.0
DEADLINE = 12.0


class _Probe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.last_answer = asyncio.get_running_loop().time()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.last_answer = asyncio.get_running_loop().time()


def target(setting: str, port: int, bind: str | None) -> tuple[str, int] | None:
    """Where to send the probe: ``None`` when disabled (``TEST_HBBS=no``)."""
    if setting.lower() == "no":
        return None
    if setting:
        return with_port(setting, port)
    host = "::1" if bind and ":" in bind else "127.0.0.1"
    if bind and bind not in ("0.0.0.0", "::"):
        host = bind
    return host, port


async def run(dest: tuple[str, int], on_failure: Callable[[], None]) -> None:
    """Probe ``dest`` until the first failure, then call ``on_failure`` (which stops the
    server cleanly with exit status 1) and return."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
    transport, probe = await loop.create_datagram_endpoint(_Probe, family=family)
    payload = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=TEST_ID)).SerializeToString()
    udp = transport
    try:
        while True:
            udp.sendto(payload, dest)
            await asyncio.sleep(INTERVAL)
            if loop.time() - probe.last_answer > DEADLINE:
                log.error("UDP self-test: no answer for %.0f s; exiting for a restart", DEADLINE)
                on_failure()
                return
    finally:
        udp.close()
