"""hbbs's warm start (the peer table read into memory after a restart), rows per second.

What ``warm_start()`` does in hbbs, on a real SQLite file in the official schema: the
table scanned page by page by the database's reader thread, each page entered into the
rendezvous core slice by slice on the event loop, with no client traffic. Measured for
this tree and, with ``--baseline-src DIR`` (the ``src`` of an earlier checkout, e.g.
``git archive main src | tar -x -C /tmp/ws_base``), for that code too, alternately in the
same run, each in its own child process (a fresh interpreter and heap, as a restart is):

- **rows/s**: rows entered over the wall time of the whole warm start (best of
  ``--repeat`` runs, the figure least disturbed by a busy machine);
- **max slice**: the longest call that entered rows on the loop (the loop serves no
  client meanwhile), and **max stall**: the worst lateness of a 2 ms timer on the loop
  during the warm start (slices, plus waiting for the GIL while the reader converts rows);
- **digest**: a hash of every (id, record) in memory afterwards, entered with a fixed
  clock, so that the trees are seen to build the same records.

The database: ``--db PATH`` (an existing file, copied first: it is never written), else
``--rows`` rows generated with plain SQL in the official schema (IPv4 mostly, some IPv6
and IPv4-mapped, compact ``info`` as the official server writes it), in a temporary
directory removed afterwards.

Usage: .venv/bin/python bench/warm_start.py [--rows 200000] [--db PATH]
       [--baseline-src DIR] [--repeat 3] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_md import write_section

from pyhbb.store.schema import CREATE_TABLE

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
RESULTS = BENCH / "RESULTS.md"
CLOCK = 1_000_000.0  # the fixed "now" the records are entered at (see the digest)
PROBE_PERIOD = 0.002


def build_db(path: Path, rows: int, v6_percent: int, seed: int = 7) -> None:
    """``rows`` peers in the official schema (the indexes hbbs creates come when it opens
    the file), random guids; ``v6_percent`` of the IPs are IPv6, as many IPv4-mapped."""
    rnd = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute(CREATE_TABLE)  # the official schema (store/schema.py)
    conn.execute("create unique index index_peer_id on peer (id)")

    def ip(i: int) -> str:
        kind = i % 100
        if kind < v6_percent:  # IPv6
            return f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::{rnd.randrange(1, 0xFFFF):x}"
        if kind < 2 * v6_percent:  # IPv4-mapped, as a dual-stack socket reports it
            return f"::ffff:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        return f"{rnd.randrange(1, 224)}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"

    batch = 20_000
    with conn:
        for start in range(0, rows, batch):
            conn.executemany(
                "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)",
                (
                    (
                        rnd.randbytes(16),
                        str(100_000_000 + i),
                        f"bench-{i:09d}-0000-4000-8000-00000000".encode(),
                        rnd.randbytes(32),
                        json.dumps({"ip": ip(i)}, separators=(",", ":")),
                    )
                    for i in range(start, min(rows, start + batch))
                ),
            )
    conn.close()


# -- the child: one warm start with one tree's code ------------------------------------------


async def child_run(db_path: str) -> dict[str, Any]:
    from pyhbb.rendezvous.adapters import warm_start as ws
    from pyhbb.rendezvous.core import RendezvousCore
    from pyhbb.rendezvous.state import CoreSettings
    from pyhbb.store.database import SqliteDatabase
    from pyhbb.store.peers import SqlitePeerStore

    core = RendezvousCore(CoreSettings())
    state = core.state
    slices: list[float] = []
    # whichever entry point this tree's warm start calls, timed per call
    for name in ("preload", "preload_rows"):
        entry = getattr(state, name, None)
        if entry is None:
            continue

        def timed(*args: Any, _entry: Any = entry) -> Any:
            t = time.perf_counter()
            try:
                return _entry(*args)
            finally:
                slices.append(time.perf_counter() - t)

        setattr(state, name, timed)

    stall = 0.0

    async def probe() -> None:
        nonlocal stall
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PROBE_PERIOD
            await asyncio.sleep(PROBE_PERIOD)
            stall = max(stall, loop.time() - due)

    async with await SqliteDatabase.open(db_path, readers=1) as db:
        store = SqlitePeerStore(db)
        rows = await store.count()
        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.05)
        stall = 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        await ws.warm_start(core, store, lambda: CLOCK, limit=rows + 1)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        prober.cancel()
    digest = hashlib.sha256()
    peers = state.peers._peers  # the compact records themselves, byte for byte
    for peer_id in sorted(peers):
        digest.update(peer_id.encode() + b"\0" + peers[peer_id] + b"\n")
    return {
        "rows": len(peers),
        "table": rows,
        "wall": wall,
        "cpu": cpu,
        "slices": len(slices),
        "max_slice_ms": max(slices, default=0.0) * 1000,
        "p99_slice_ms": sorted(slices)[int(len(slices) * 0.99)] * 1000 if slices else 0.0,
        "slices_over_2ms": sum(1 for s in slices if s > 0.002),
        "max_stall_ms": stall * 1000,
        "digest": digest.hexdigest()[:16],
    }


def run_child(src: Path, db: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"warm start child ({src}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- the report --------------------------------------------------------------------------------


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: r["wall"])


def report(results: dict[str, list[dict[str, Any]]], table: int, source: str, notes: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Warm start",
        "",
        f"bench/warm_start.py, {now}, {platform.python_implementation()} "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores; "
        f"{table} rows ({source}); best of {len(next(iter(results.values())))} runs per tree, "
        "alternating.",
        "",
        "| tree | rows/s | wall s | CPU s | slices | p99 slice ms | max slice ms | slices > 2 ms "
        "| max loop stall ms | digest |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        b = best(runs)
        lines.append(
            f"| {name} | {b['rows'] / b['wall']:,.0f} | {b['wall']:.2f} | {b['cpu']:.2f} | "
            f"{b['slices']} | {max(r['p99_slice_ms'] for r in runs):.2f} | "
            f"{max(r['max_slice_ms'] for r in runs):.2f} | "
            f"{max(r['slices_over_2ms'] for r in runs)} | "
            f"{max(r['max_stall_ms'] for r in runs):.1f} | `{b['digest']}` |"
        )
    if "baseline" in results:
        new, base = best(results["this tree"]), best(results["baseline"])
        same = {r["digest"] for rs in results.values() for r in rs}
        lines += [
            "",
            f"Ratio this tree / baseline: **{base['wall'] / new['wall']:.1f}×** rows/s "
            f"({base['cpu'] / new['cpu']:.1f}× less CPU); records "
            + ("identical (same digest)." if len(same) == 1 else "DIFFER (digests differ)!"),
        ]
    lines += ["", "Slice and stall figures are the worst over all runs."]
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(child_run(sys.argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help="rows to generate (without --db)")
    ap.add_argument(
        "--ipv6-percent", type=int, default=5, help="IPv6 rows, and as many mapped (default 5)"
    )
    ap.add_argument("--db", type=Path, help="an existing database (copied; never written)")
    ap.add_argument("--baseline-src", type=Path, help="src/ of the code to compare with")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tree (default 3)")
    ap.add_argument("--note", default="", help="a line added to the section (machine load…)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    a = ap.parse_args()
    if not 1 <= a.rows <= 5_000_000 or not 1 <= a.repeat <= 10 or not 0 <= a.ipv6_percent <= 50:
        ap.error("--rows is 1..5000000, --repeat 1..10, --ipv6-percent 0..50")
    trees = {"this tree": SRC}
    if a.baseline_src is not None:
        if not (a.baseline_src / "pyhbb").is_dir():
            ap.error(f"--baseline-src {a.baseline_src}: no pyhbb package there")
        trees["baseline"] = a.baseline_src
    work = Path(tempfile.mkdtemp(prefix="warm_start_"))
    try:
        db = work / "db.sqlite3"
        if a.db is not None:
            shutil.copyfile(a.db, db)
            source = f"copy of {a.db.name}"
        else:
            build_db(db, a.rows, a.ipv6_percent)
            v6 = a.ipv6_percent
            source = f"generated: {100 - 2 * v6}% IPv4, {v6}% IPv6, {v6}% IPv4-mapped"
        run_child(SRC, db)  # opens the file once as hbbs would (WAL, indexes) and warms caches
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for i in range(a.repeat):
            for name, src in trees.items() if i % 2 == 0 else reversed(trees.items()):
                r = run_child(src, db)
                results[name].append(r)
                print(
                    f"{name}: {r['rows']} rows in {r['wall']:.2f} s "
                    f"({r['rows'] / r['wall']:,.0f}/s), slices p99 {r['p99_slice_ms']:.2f} ms "
                    f"max {r['max_slice_ms']:.2f} ms, "
                    f"max stall {r['max_stall_ms']:.1f} ms, digest {r['digest']}",
                    flush=True,
                )
        table = results["this tree"][0]["table"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = report(results, table, source, a.note)
    print()
    print(section)
    if not a.no_write:
        write_section(a.results, section)
        print(f"written to {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
