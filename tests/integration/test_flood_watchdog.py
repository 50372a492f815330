"""Issue 12: the UDP self-test tells a wedged socket (exit for a restart) from a busy
one (keep serving)."""

from __future__ import annotations

import asyncio
import socket

from pyhbb.rendezvous import watchdog
from pyhbb.rendezvous.watchdog import BUSY, OK, WEDGED, SelfTest


def test_verdict_from_answers_and_socket_progress() -> None:
    t = SelfTest(0.0, received=100)
    assert t.check(5.0, 100) == OK
    assert t.check(12.5, 150) == BUSY  # no answer, but datagrams keep arriving
    assert t.check(24.0, 900) == BUSY
    assert t.check(36.5, 900) == WEDGED  # nothing at all for more than 12 s
    t.answered(37.0)
    assert t.check(38.0, 900) == OK


async def test_a_busy_server_is_not_stopped_but_a_deaf_one_is() -> None:
    deaf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deaf.bind(("127.0.0.1", 0))  # receives the probes, never answers
    counter = {"n": 0}

    def received() -> int:  # a server that handles datagrams while losing the probes
        counter["n"] += 1
        return counter["n"]

    failed = asyncio.Event()
    old_deadline, watchdog.DEADLINE = watchdog.DEADLINE, 0.5
    try:
        task = asyncio.ensure_future(watchdog.run(deaf.getsockname(), failed.set, received))
        await asyncio.sleep(2.5)
        assert not failed.is_set() and not task.done()
        counter["n"] = -(10**9)  # the socket stops delivering anything: wedged
        received_now = counter["n"]
        task.cancel()
        task = asyncio.ensure_future(
            watchdog.run(deaf.getsockname(), failed.set, lambda: received_now)
        )
        async with asyncio.timeout(10):
            await task
        assert failed.is_set()
    finally:
        watchdog.DEADLINE = old_deadline
        deaf.close()
