"""Many coroutines at once, group commit, and an event loop that never waits for SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyhbb.store.base import StoredPeer
from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from pyhbb.store.workers import SETTLE_SLICE
from tests.store.conftest import PK, new_guid, peer_store, started, write_lock

pytestmark = pytest.mark.timeout(120)


async def test_many_coroutines_reading_and_writing(db_path: Path) -> None:
    async with peer_store(str(db_path), readers=4) as store:

        async def life(n: int) -> None:
            guid = new_guid()
            await store.insert(guid, f"peer-{n}", b"u", PK, "10.0.0.1")
            assert await store.get(f"peer-{n}") == StoredPeer(
                guid, f"peer-{n}", b"u", PK, "10.0.0.1"
            )
            await store.update(guid, f"peer-{n}", b"\x02" * 32, f"10.0.{n // 256}.{n % 256}")
            await store.rename(guid, f"renamed-{n}")
            assert await store.get(f"peer-{n}") is None
            assert await store.get(f"renamed-{n}") == StoredPeer(
                guid, f"renamed-{n}", b"u", b"\x02" * 32, f"10.0.{n // 256}.{n % 256}"
            )
            await store.count()

        await asyncio.gather(*(life(n) for n in range(300)))
        assert await store.count() == 300


async def test_queued_writes_share_one_transaction(
    store: SqlitePeerStore, db: SqliteDatabase, db_path: Path
) -> None:
    before = db.write_transactions
    with write_lock(db_path):
        tasks = await started(
            *(store.insert(new_guid(), f"p{i}", b"u", PK, "10.0.0.1") for i in range(200))
        )
        assert not any(t.done() for t in tasks)
    await asyncio.gather(*tasks)
    # One transaction, or two if the writer had taken the first insert before the rest.
    assert db.write_transactions - before <= 2
    assert await store.count() == 200


async def test_loop_and_reads_go_on_while_the_writer_waits_for_a_lock(
    store: SqlitePeerStore, db_path: Path
) -> None:
    await store.insert(new_guid(), "present", b"u", PK, "10.0.0.1")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        with write_lock(db_path):
            [blocked] = await started(store.insert(new_guid(), "later", b"u", PK, "10.0.0.2"))
            mark = ticks
            for _ in range(50):
                await asyncio.sleep(0)
            assert ticks > mark  # the loop runs while the writer thread is stuck
            assert (await store.get("present")) is not None  # WAL: readers are not blocked
            assert await store.count() == 1
            assert not blocked.done()
        await blocked
        assert (await store.get("later")) is not None
    finally:
        ticking.cancel()


async def test_loop_keeps_ticking_while_a_big_batch_commits(store: SqlitePeerStore) -> None:
    total = 5000
    submitted = done = 0
    samples: list[tuple[int, int]] = []

    async def ticker() -> None:
        while done < total:
            samples.append((submitted, done))
            await asyncio.sleep(0)

    async def insert(n: int) -> None:
        nonlocal submitted, done
        submitted += 1
        await store.insert(new_guid(), f"bulk-{n}", b"u", PK, "10.0.0.1")
        done += 1

    await asyncio.gather(ticker(), *(insert(n) for n in range(total)))
    # The ticker ran while every insert was submitted and none had been acknowledged: the
    # commit happened elsewhere. A store that blocked the loop could never produce this.
    assert (total, 0) in samples
    assert len({d for _, d in samples}) >= 2  # and it kept ticking as results came in
    assert await store.count() == total


async def test_cancelled_write_still_happens_and_the_store_goes_on(
    store: SqlitePeerStore, db_path: Path
) -> None:
    with write_lock(db_path):
        [task] = await started(store.insert(new_guid(), "cancelled", b"u", PK, "10.0.0.1"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await store.insert(new_guid(), "after", b"u", PK, "10.0.0.1")
    assert await store.get("cancelled") is not None
    assert await store.count() == 2


async def test_a_group_commit_resumes_its_writers_a_slice_per_loop_iteration(
    store: SqlitePeerStore, db: SqliteDatabase, db_path: Path
) -> None:
    """A commit of 1,000 writes must not wake 1,000 callers in one loop iteration: the
    loop polls no socket until all have run (the issue 12 stalls). Counted per iteration,
    not timed."""
    iteration = 0
    stop = False

    def tick() -> None:
        nonlocal iteration
        iteration += 1
        if not stop:
            asyncio.get_running_loop().call_soon(tick)

    woken: list[int] = []

    async def insert(i: int) -> None:
        await store.insert(new_guid(), f"p{i}", b"u", PK, "10.0.0.1")
        woken.append(iteration)

    before = db.write_transactions
    with write_lock(db_path):
        tasks = await started(*(insert(i) for i in range(1000)))
    tick()
    await asyncio.gather(*tasks)
    stop = True
    assert db.write_transactions - before <= 2  # one big commit (two at most): the case
    per_iteration = [woken.count(i) for i in set(woken)]
    assert sum(per_iteration) == 1000
    assert max(per_iteration) <= SETTLE_SLICE, max(per_iteration)
    assert await store.count() == 1000


async def test_two_databases_on_one_loop_deliver_independently(tmp_path: Path) -> None:
    """Each database hands back its own outcomes: one whose writer waits for a lock
    neither holds back nor mixes up the other's, and both settle in their order."""
    path_a, path_b = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    async with (
        await SqliteDatabase.open(str(path_a), busy_timeout=60) as db_a,
        await SqliteDatabase.open(str(path_b), busy_timeout=60) as db_b,
    ):
        store_a, store_b = SqlitePeerStore(db_a), SqlitePeerStore(db_b)
        with write_lock(path_a):
            waiting = await started(
                *(store_a.insert(new_guid(), f"a{i}", b"u", PK, "10.0.0.1") for i in range(100))
            )
            # the other database's 300 writes complete while all of A's still wait
            for i in range(300):
                await store_b.insert(new_guid(), f"b{i}", b"u", PK, "10.0.0.2")
            assert not any(t.done() for t in waiting)
        await asyncio.gather(*waiting)
        assert await store_a.count() == 100
        assert await store_b.count() == 300
        assert await store_a.get("b0") is None and await store_b.get("a0") is None
