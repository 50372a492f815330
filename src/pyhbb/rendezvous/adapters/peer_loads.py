"""Performs the core's ``LoadPeer`` actions, many ids per database read.

After a restart a million returning peers each need their record read once (the
heartbeat take-back, registration.py), tens of thousands per second: one read job per id
would cost a task, a thread hand-off and a statement each. Ids asked for while every
reader is busy wait here and go together in the next job (``Directory.get_many``, on a
single server ``SqlitePeerStore.get_many``):
no added delay when the database is idle, hundreds of ids per query under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pyhbb.cluster.directory import Directory
from pyhbb.rendezvous.actions import Action, StoreFailure
from pyhbb.rendezvous.core import RendezvousCore

MAX_BATCH = 1000  # ids per read job: a job holds a reader (and, briefly, the GIL) for ~10 ms
RESUME_SLICE = 32  # waiters resumed per loop iteration: each decides and sends (~20-40 µs)


class PeerLoads:
    """Queues the ids to read and runs at most ``parallel`` read jobs at a time."""

    def __init__(
        self,
        core: RendezvousCore,
        directory: Directory,
        clock: Callable[[], float],
        run: Callable[[list[Action]], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        failure: Callable[[Exception], StoreFailure],
        parallel: int = 1,
    ) -> None:
        self._core = core
        self._directory = directory
        self._clock = clock
        self._run = run
        self._spawn = spawn
        self._failure = failure
        self.parallel = parallel
        self._queue: list[str] = []
        self._in_flight = 0
        self._scheduled = False
        self.jobs = 0
        """Read jobs started (statistics: ids per job = loads / jobs)."""
        self.loads = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def load(self, peer_id: str) -> None:
        """Read ``peer_id``; the core hears of it through ``peer_loaded`` (or failed)."""
        self._queue.append(peer_id)
        self.loads += 1
        if not self._scheduled and self._in_flight < self.parallel:
            # Start once the loop has handed over what it received meanwhile: the ids
            # of the datagrams of this loop iteration go in one job.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.start)

    def start(self) -> None:
        """Start read jobs for the queued ids, as many as readers are free."""
        self._scheduled = False
        queue = self._queue
        while queue and self._in_flight < self.parallel:
            batch = queue[:MAX_BATCH]
            del queue[:MAX_BATCH]
            self._in_flight += 1
            self.jobs += 1
            self._spawn(self._read(batch))

    async def _read(self, batch: list[str]) -> None:
        core = self._core
        try:
            try:
                rows = await self._directory.get_many(batch)
            except Exception as e:  # StoreError, or a store bug: the waiters still get answers
                failure = self._failure(e)
                for peer_id in batch:
                    self._run(core.peer_load_failed(peer_id, failure, self._clock()))
                return
            for start in range(0, len(batch), RESUME_SLICE):
                if start:
                    await asyncio.sleep(0)  # let datagrams and timers in between slices
                now = self._clock()
                for peer_id in batch[start : start + RESUME_SLICE]:
                    self._run(core.peer_loaded(peer_id, rows.get(peer_id), now))
        finally:
            self._in_flight -= 1
            self.start()  # from this task, so that shutdown's drain sees the next one
