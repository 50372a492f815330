"""What a node does with what the bus brings it: decode, ask the core, perform its actions.

Used by any :class:`~pyhbb.cluster.bus.Bus` (the NATS one in cluster mode). A message
that does not decode comes from a broken node: counted, logged (throttled), answered
``bad``; never an exception into the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyhbb.cluster.bus import EVICT, PUNCH, RELAY
from pyhbb.cluster.messages import BadMessage, decode_evict, decode_punch, decode_relay
from pyhbb.observability.throttle import worth_logging
from pyhbb.rendezvous.actions import Action
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.cluster")

OK = b"ok"
BAD = b"bad"


class CoreBusHandler:
    """:class:`~pyhbb.cluster.bus.BusHandler` feeding one rendezvous core."""

    def __init__(
        self, core: RendezvousCore, run: Callable[[list[Action]], None], clock: Callable[[], float]
    ) -> None:
        self.core = core
        self.run = run
        self.clock = clock
        self.bad = 0

    def on_request(self, topic: str, body: bytes) -> bytes:
        core, now = self.core, self.clock()
        try:
            if topic == PUNCH:
                p = decode_punch(body)
                outcome, actions = core.on_owner_punch(
                    p.peer_id, p.request, p.requester, p.is_ws, p.relay_server, now
                )
                self.run(actions)
                return outcome.encode()
            if topic == RELAY:
                peer_id, payload = decode_relay(body)
                self.run(core.on_owner_relay(peer_id, payload))
                return OK
            if topic == EVICT:
                peer_id, revision = decode_evict(body)
                self.run(core.on_evict(peer_id, revision, now))
                return OK
            raise BadMessage(f"unknown topic {topic!r}")
        except BadMessage as e:
            self.bad += 1
            if worth_logging(self.bad):
                log.warning("bad %s request from another node: %s (%d so far)", topic, e, self.bad)
            return BAD

    def on_answer(self, key: Addr, payload: bytes) -> None:
        self.run(self.core.on_answer(key, payload))

    def online_states(self, peers: list[str]) -> bytes:
        return self.core.online_states(peers, self.clock())
