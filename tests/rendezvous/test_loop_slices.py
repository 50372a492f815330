"""Work delivered in bulk is handled in bounded slices, with the loop serving clients in
between (issue 11 item 5): the warm start's rows, the heartbeats waiting for them, the
heartbeats resumed by a batched read. In the 1M restart storm most rows have a heartbeat
waiting for them, and answering 500 of them in one loop iteration held the loop for
10-11 ms each time. Counted here over a real SQLite file and a real event loop: answers
sent and rows entered between two loop iterations, never timings."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyhbb.rendezvous.actions import Action, SendUdp
from pyhbb.rendezvous.adapters.executor import Executor
from pyhbb.rendezvous.adapters.http_proxy import HttpProxy
from pyhbb.rendezvous.adapters.warm_start import (
    ANSWER_SLICE,
    SLICE,
    STEP,
    WarmSlices,
    warm_start,
)
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.rendezvous.peer_registry import addr_key
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from tests.rendezvous.helpers import PK_A, make_core, register_peer

ROWS = 1200
MAX_ANSWERS_PER_ITERATION = 64  # ~20-40 µs each (a decision and a send): 1-2.5 ms
IP = "10.1.2.3"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlitePeerStore]:
    async with await SqliteDatabase.open(str(tmp_path / "db_v2.sqlite3")) as db:
        store = SqlitePeerStore(db)
        for i in range(ROWS):
            await store.insert(i.to_bytes(16, "big"), f"peer{i:05d}", b"u" * 16, PK_A, IP)
        yield store
        await store.close()


class Iterations:
    """Counts loop iterations: a callback that schedules itself runs once per iteration."""

    def __init__(self) -> None:
        self.count = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def run_warm_start(
    core: RendezvousCore, store: SqlitePeerStore
) -> tuple[Counter[int], Counter[int]]:
    """Answers sent and records entered, by loop iteration."""
    loop = asyncio.get_running_loop()
    iterations = Iterations()
    answers: Counter[int] = Counter()
    entered: Counter[int] = Counter()
    peers = core.state.peers

    def run(actions: list[Action]) -> None:
        assert all(isinstance(a, SendUdp) for a in actions)
        answers[iterations.count] += len(actions)

    class Counting:
        """Wraps ``preload_rows`` to count the records entered in each iteration."""

        def __init__(self) -> None:
            self.real = core.state.preload_rows

        def __call__(self, rows: object, now: float, limit: int) -> int:
            before = len(peers)
            n = self.real(rows, now, limit)  # type: ignore[arg-type]
            entered[iterations.count] += len(peers) - before
            return n

    core.state.preload_rows = Counting()  # type: ignore[method-assign]
    try:
        await warm_start(core, store, loop.time, 10 * ROWS, run)
    finally:
        iterations.stop()
    return answers, entered


async def test_answers_to_waiting_heartbeats_are_spread_over_loop_iterations(
    store: SqlitePeerStore,
) -> None:
    core = make_core()
    registration = core.registration
    registration.warm_start_began()
    waiters = registration.warm_waiters
    assert waiters is not None
    for i in range(ROWS):  # the storm: every row has a heartbeat waiting for it
        assert waiters.park(f"peer{i:05d}", 0, addr_key((IP, 20000 + i)))
    registration.warm_start_began = lambda: None  # type: ignore[method-assign]  # keep them
    answers, entered = await run_warm_start(core, store)
    assert sum(answers.values()) == ROWS  # every waiter answered, once
    assert core.state.stats["heartbeat_warm_answered"] == ROWS
    assert max(answers.values()) <= MAX_ANSWERS_PER_ITERATION  # was 500 per iteration
    assert max(entered.values()) <= ANSWER_SLICE + STEP
    assert len(answers) >= ROWS // MAX_ANSWERS_PER_ITERATION


async def test_rows_nobody_waits_for_are_entered_a_slice_per_iteration(
    store: SqlitePeerStore,
) -> None:
    core = make_core()
    answers, entered = await run_warm_start(core, store)
    assert not answers
    assert sum(entered.values()) == ROWS == len(core.state.peers)
    assert max(entered.values()) <= SLICE
    # not slower than before when nothing waits: SLICE rows per iteration
    assert sum(1 for n in entered.values() if n == SLICE) >= ROWS // SLICE - 1


def test_a_slice_ends_at_its_rows_or_its_answers() -> None:
    slices = WarmSlices(rows=100, answers=10)
    assert not slices.full(50, 0)
    assert slices.full(50, 0)  # 100 rows
    assert not slices.full(5, 9)
    assert slices.full(5, 1)  # 10 answers
    assert not slices.full(99, 9)  # a new slice


async def test_heartbeats_resumed_by_a_batched_read_are_answered_a_slice_per_iteration(
    store: SqlitePeerStore,
) -> None:
    core = make_core(take_back_reads_per_second=1e6)  # one source: above its fair share
    loop = asyncio.get_running_loop()
    executor = Executor(core, store, loop.time, HttpProxy("http://127.0.0.1:9", 1024).handle)
    iterations = Iterations()
    sent: Counter[int] = Counter()

    def send(payload: bytes, addr: tuple[str, int]) -> None:
        sent[iterations.count] += 1

    executor._send_udp = send
    try:
        for i in range(ROWS):  # a restart: the heartbeats of peers not in memory
            executor.run(core.on_udp(register_peer(f"peer{i:05d}"), (IP, 20000), loop.time()))
        assert not sent and executor.loads.loads == ROWS
        await executor.drain()
    finally:
        iterations.stop()
    assert sum(sent.values()) == ROWS  # every heartbeat answered once read
    assert max(sent.values()) <= MAX_ANSWERS_PER_ITERATION
