"""Routing between nodes over core NATS subjects (docs/cluster.md §1.2).

* ``hbb.n.<node>.<topic>``: requests to one node (punch, relay, evict, ping). When the
  node is gone its subscription is gone too, and the request fails at once with "no
  responders": a punch to a dead node's peer gets OFFLINE without waiting.
* ``hbb.rq.<hex of A's address>``: a node where requester A waits subscribes while it
  waits (bounded in time); the node receiving B's answer publishes it there.
* ``hbb.online``: every node answers an online query with its own bitmap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError

from pyhbb.cluster.bus import Bus, BusHandler, NodeGone
from pyhbb.cluster.messages import (
    MAX_ONLINE_IDS,
    ONLINE_SUBJECT,
    BadMessage,
    answer_key,
    answer_subject,
    node_subject,
)
from pyhbb.observability.throttle import worth_logging
from pyhbb.wire.addr_mangle import Addr

log = logging.getLogger("pyhbb.cluster")

REQUEST_TIMEOUT = 1.0
ANSWER_WAIT = 35.0  # a requester's connection idles out after 30 s
MAX_WAITING = 100_000  # answer subscriptions at once (bounded like the connections)
ONLINE_TIMEOUT = 0.5
PING = "ping"


class NatsBus:
    """:class:`~pyhbb.cluster.bus.Bus` on one NATS connection."""

    def __init__(
        self,
        nc: Client,
        node: str,
        handler: BusHandler,
        other_nodes: Callable[[], int] = lambda: 0,
    ) -> None:
        self.nc = nc
        self.node = node
        self.handler = handler
        self.other_nodes = other_nodes
        """How many other live nodes should answer an online scatter."""
        self._waiting: dict[str, tuple[Subscription | None, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Subscription] = []
        self.errors = 0

    async def start(self) -> None:
        """Answer this node's requests and the online scatter."""
        self._subs.append(await self.nc.subscribe(node_subject(self.node, "*"), cb=self._request))
        self._subs.append(await self.nc.subscribe(ONLINE_SUBJECT, cb=self._online))
        await self.nc.flush()

    async def name_in_use(self) -> bool:
        """Whether another live node already answers for this node's name."""
        try:
            await self.nc.request(node_subject(self.node, PING), b"", timeout=REQUEST_TIMEOUT)
        except (NoRespondersError, TimeoutError):
            return False
        return True

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            if worth_logging(self.errors):
                log.warning("bus operation failed: %s (%d so far)", task.exception(), self.errors)

    # -- requests to a node -----------------------------------------------------------------

    async def _request(self, msg: Msg) -> None:
        topic = msg.subject.rpartition(".")[2]
        reply = b"pong" if topic == PING else self.handler.on_request(topic, msg.data)
        if msg.reply:
            await msg.respond(reply)

    async def to_owner(self, node: str, topic: str, body: bytes) -> bytes:
        try:
            reply = await self.nc.request(node_subject(node, topic), body, timeout=REQUEST_TIMEOUT)
        except NoRespondersError as e:
            raise NodeGone(node) from e
        return reply.data

    # -- answers to the node where A waits -------------------------------------------------------

    def await_answer(self, key: Addr) -> None:
        subject = answer_subject(key)
        deadline = time.monotonic() + ANSWER_WAIT
        found = self._waiting.get(subject)
        if found is not None:
            self._waiting[subject] = (found[0], deadline)
            return
        if len(self._waiting) >= MAX_WAITING:
            return
        self._waiting[subject] = (None, deadline)
        self._spawn(self._subscribe_answers(subject))

    async def _subscribe_answers(self, subject: str) -> None:
        sub = await self.nc.subscribe(subject, cb=self._answer)
        found = self._waiting.get(subject)
        if found is None:  # expired while subscribing
            await sub.unsubscribe()
            return
        self._waiting[subject] = (sub, found[1])

    async def _answer(self, msg: Msg) -> None:
        try:
            key = answer_key(msg.subject)
        except BadMessage:
            return
        self.handler.on_answer(key, msg.data)

    def deliver_answer(self, key: Addr, payload: bytes) -> None:
        self._spawn(self.nc.publish(answer_subject(key), payload))

    def sweep(self) -> None:
        """Once a second: stop waiting for answers whose requester has long gone."""
        now = time.monotonic()
        for subject, (sub, deadline) in list(self._waiting.items()):
            if deadline < now and sub is not None:
                del self._waiting[subject]
                self._spawn(sub.unsubscribe())

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- online scatter-gather -----------------------------------------------------------------

    async def _online(self, msg: Msg) -> None:
        try:
            doc = json.loads(msg.data)
            origin, peers = doc["from"], doc["ids"]
            if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
                raise ValueError("ids")
        except (ValueError, KeyError, TypeError):
            return
        if origin == self.node or not msg.reply:
            return
        await msg.respond(self.handler.online_states(peers[:MAX_ONLINE_IDS]))

    async def online_scatter(self, peers: list[str]) -> list[bytes]:
        expected = self.other_nodes()
        if expected <= 0:
            return []
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        answers: list[bytes] = []
        try:
            body = json.dumps({"from": self.node, "ids": peers[:MAX_ONLINE_IDS]}).encode()
            await self.nc.publish(ONLINE_SUBJECT, body, reply=inbox)
            deadline = time.monotonic() + ONLINE_TIMEOUT
            while len(answers) < expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    reply = await sub.next_msg(timeout=left)
                except TimeoutError:
                    break
                answers.append(reply.data)
        finally:
            await sub.unsubscribe()
        return answers

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for sub, _ in self._waiting.values():
            if sub is not None:
                await sub.unsubscribe()
        self._waiting.clear()
        for sub in self._subs:
            await sub.unsubscribe()


if TYPE_CHECKING:
    _interface: type[Bus] = NatsBus
