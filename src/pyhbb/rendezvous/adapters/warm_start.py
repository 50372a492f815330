"""Warm start: right after hbbs starts, the peer table is read into memory, page by page.

After a restart (an upgrade, a crash) every returning client heartbeats within one
period (15 s, docs/protocol.md §12). Reading each one's record when its heartbeat comes
(the take-back, registration.py) costs a look-up by id and a pass through the core per
peer; reading the table in its own order costs a fraction of that, so a million peers are
back in memory before most of their heartbeats arrive, and those find their record at
once. Rows are entered only while the table has room (up to ``limit``, below
MAX_PEERS_IN_MEMORY so that new peers still fit), each page in slices between which the
loop serves clients; a row no heartbeat claims is evicted a few minutes later
(``CoreState.preload``). Peers not read yet, or beyond the limit, are taken back by their
heartbeat as before; a heartbeat for which no read can be spared waits for its row
(rendezvous/warm_waiters.py) and is answered as the slice holding it is entered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pyhbb.rendezvous.actions import Action
from pyhbb.rendezvous.core import RendezvousCore
from pyhbb.store.base import PeerStore

log = logging.getLogger("pyhbb.rendezvous")

PAGE = 5000  # rows per read job: a few ms of the reader's time
SLICE = 256  # rows entered per loop iteration when none answers a heartbeat: ~1-3 ms at 1M
STEP = 32  # rows entered at a time, so that a loop iteration stops near ANSWER_SLICE
ANSWER_SLICE = 32  # answers to waiting heartbeats per loop iteration (at most STEP - 1 more)
# An answered waiter costs a decision and a send (~20 µs): with 500 of them per iteration,
# as in the 1M restart storm where most rows have a waiter, every iteration held the loop
# for 10-11 ms (hbbs_probe.py's stall stacks); at most 63 answers take ~1-2 ms. Entering a
# row took 5-6 µs in the 1M storm (cache misses on a loaded machine): 512 rows were ~3 ms
# of a 10-15 ms iteration, two slices sometimes between two ticks of the probe's timer.


async def warm_start(
    core: RendezvousCore,
    store: PeerStore,
    clock: Callable[[], float],
    limit: int,
    run: Callable[[list[Action]], None],
) -> None:
    """Read the peer table into ``core`` (see the module); ``run`` performs the answers
    to the heartbeats that waited for their rows.

    One page at a time: reading the next page while the loop enters the current one was
    measured no faster (bench/warm_start.py): the driver holds the GIL to convert each
    row, so the two threads take turns rather than overlap."""
    started = clock()
    registration = core.registration
    registration.warm_start_began()
    try:
        entered = await _read_table(core, store, clock, limit, run)
    finally:
        left = registration.warm_start_ended()
    log.info(
        "warm start: %d peers read into memory in %.1f s; %d heartbeats that waited for a "
        "read answered as their row came, %d still waiting (taken back when resent)%s",
        entered,
        clock() - started,
        core.state.stats["heartbeat_warm_answered"],
        left,
        "" if len(core.state.peers) < limit else " (table limit reached: the rest load on demand)",
    )


async def _read_table(
    core: RendezvousCore,
    store: PeerStore,
    clock: Callable[[], float],
    limit: int,
    run: Callable[[list[Action]], None],
) -> int:
    after = b""
    entered = 0
    state = core.state
    registration = core.registration
    while len(state.peers) < limit:
        try:
            page = await store.scan_compact(after, PAGE)
        except Exception as e:  # StoreError, or a store bug: the heartbeats still get in
            log.warning(
                "warm start stopped after %d peers: %s; the others are read back as they heartbeat",
                entered,
                e,
            )
            break
        rows = page.rows
        if not rows:
            break
        after = page.last_guid
        slices = WarmSlices()
        for start in range(0, len(rows), STEP):
            now = clock()
            batch = rows[start : start + STEP]
            entered += state.preload_rows(batch, now, limit)
            answers = registration.warm_rows_entered(batch, now)
            if answers:
                run(answers)
            if slices.full(len(batch), len(answers)):
                await asyncio.sleep(0)
        # a page ends its slice: the next page's read lets the loop run
    return entered


class WarmSlices:
    """When the warm start lets the loop serve clients: after :data:`SLICE` rows, or
    sooner after :data:`ANSWER_SLICE` answers to waiting heartbeats (each answer costs
    tens of times what entering a row does)."""

    def __init__(self, rows: int = SLICE, answers: int = ANSWER_SLICE) -> None:
        self.rows_limit = rows
        self.answers_limit = answers
        self.rows = 0
        self.answers = 0

    def full(self, rows: int, answers: int) -> bool:
        """Count ``rows`` entered and ``answers`` sent; True (and start a new slice) when
        this slice is done."""
        self.rows += rows
        self.answers += answers
        if self.rows < self.rows_limit and self.answers < self.answers_limit:
            return False
        self.rows = self.answers = 0
        return True
