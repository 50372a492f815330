"""Peer-store benchmark: RegisterPk-like traffic through the database's group commit.

Each "registration" is what hbbs does for a new peer: ``get`` the id (a read job), then
``insert`` it (a write job), awaited one after the other by ``C`` concurrent clients.
The baseline, run in the same invocation on the same disk, is the ideal group commit
without asyncio or threads hand-offs: one plain ``sqlite3`` connection doing the same
select + insert for ``C`` peers per ``BEGIN IMMEDIATE … COMMIT`` (synchronous=FULL, WAL).
Figures: registrations/s and CPU per registration (all threads of the process), as
ratios to the baseline, and peers per commit (how well group commit batches). The disk's
fsync latency dominates the rates and varies a lot on a shared machine: compare the CPU
and batching columns across runs, the rates only within one run.

Usage: .venv/bin/python bench/store_bench.py [--peers N] [--clients 1,16,256] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore
from pyhbb.store.schema import CREATE_INDEXES, CREATE_TABLE

PK = bytes(32)


async def pyhbb_run(path: Path, peers: int, clients: int) -> tuple[float, float, float]:
    """(registrations/s, CPU µs each, peers per commit) through the store (all threads)."""
    db = await SqliteDatabase.open(str(path), readers=4)
    store = SqlitePeerStore(db)

    async def client(n: int) -> None:
        for i in range(n, peers, clients):
            peer_id = f"peer-{i}"
            if await store.get(peer_id) is None:
                await store.insert(uuid.uuid4().bytes, peer_id, b"uuid", PK, "10.0.0.1")

    try:
        before = db.write_transactions
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        commits = db.write_transactions - before
    finally:
        await store.close()
        await db.close()
    return peers / elapsed, cpu * 1e6 / peers, peers / max(commits, 1)


def baseline_run(path: Path, peers: int, clients: int) -> tuple[float, float]:
    """(registrations/s, CPU µs each) for ideal batches of ``clients`` on one connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma journal_mode = wal")
    conn.execute("pragma synchronous = full")
    conn.execute(CREATE_TABLE)
    for statement in CREATE_INDEXES.values():
        conn.execute(statement)
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, peers, clients):
        conn.execute("begin immediate")
        for i in range(first, min(first + clients, peers)):
            peer_id = f"peer-{i}"
            if conn.execute("select guid from peer where id = ?", (peer_id,)).fetchone() is None:
                conn.execute(
                    "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)",
                    (uuid.uuid4().bytes, peer_id, b"uuid", PK, '{"ip":"10.0.0.1"}'),
                )
        conn.execute("commit")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return peers / elapsed, cpu * 1e6 / peers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=5000)
    ap.add_argument("--clients", default="1,16,256", help="concurrent clients, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="alternated runs; medians reported")
    a = ap.parse_args()
    print(
        "| clients | baseline reg/s | pyhbb reg/s | × baseline "
        "| baseline CPU µs/reg | pyhbb CPU µs/reg | × baseline | pyhbb peers/commit |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for clients in (int(c) for c in a.clients.split(",")):
        base: list[tuple[float, float]] = []
        ours: list[tuple[float, float, float]] = []
        peers = a.peers if clients > 1 else max(a.peers // 10, 100)  # one fsync each
        for _ in range(a.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                base.append(baseline_run(Path(tmp) / "base.sqlite3", peers, clients))
                ours.append(asyncio.run(pyhbb_run(Path(tmp) / "db.sqlite3", peers, clients)))
        b_rate, b_cpu = (statistics.median(x) for x in zip(*base, strict=True))
        o_rate, o_cpu, o_batch = (statistics.median(x) for x in zip(*ours, strict=True))
        print(
            f"| {clients} | {b_rate:,.0f} | {o_rate:,.0f} | {o_rate / b_rate:.2f} "
            f"| {b_cpu:.0f} | {o_cpu:.0f} | {o_cpu / b_cpu:.1f} | {o_batch:.1f} |"
        )


if __name__ == "__main__":
    main()
