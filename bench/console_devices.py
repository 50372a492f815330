"""The web console's device list at scale: 100k registered devices, 10k online.

Measures, in one run on loopback:

* server time per page of ``/devices`` (real uvicorn, real SQLite file, signed-in
  session, hbbs asked over P-1 for the page's online state): first page, a deep keyset
  page, sorted by host name and by last seen, a search, a plain user's page; against a
  baseline in the same run, the sign-in page (same stack, a trivial template);
* the live refresh: ``/devices/online.json`` for a page of IDs, end to end;
* its cost on hbbs: the OnlineRequest decision in the rendezvous core for 50 and 200
  IDs, against the core's hot path in the same run (one RegisterPeer heartbeat).

The 10k online devices are put in hbbs's table directly (the registrations are not
what is measured). Usage: ``.venv/bin/python bench/console_devices.py [--devices N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyhbb.api.schema import MIGRATIONS  # noqa: E402
from pyhbb.rendezvous.peer_registry import PeerRecord  # noqa: E402
from pyhbb.store.database import SqliteDatabase  # noqa: E402
from pyhbb.wire import rendezvous_pb2 as pb  # noqa: E402
from tests.api.support import running_api  # noqa: E402
from tests.console.support import Browser  # noqa: E402
from tests.support.hbbs_server import running_hbbs  # noqa: E402


def seed(path: Path, n: int) -> list[str]:
    ids = [f"{100_000_000 + i * 7}" for i in range(n)]
    conn = sqlite3.connect(path)
    conn.execute("pragma synchronous = off")
    (owner,) = conn.execute("select id from api_user where name = 'plain'").fetchone()
    peers, devices = [], []
    now = time.time()
    for i, peer_id in enumerate(ids):
        guid = os.urandom(16)
        peers.append(
            (guid, peer_id, os.urandom(16), os.urandom(32), json.dumps({"ip": "10.0.0.1"}))
        )
        if i % 10:  # 10% never called the API: no sysinfo row
            devices.append(
                (
                    guid,
                    owner if i % 100 == 1 else None,
                    f"host-{i * 7919 % n:06d}",
                    "Windows / 11",
                    f"user{i % 5000}",
                    "1.4.9",
                    now - i,
                    "{}",
                )
            )
    conn.executemany("insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)", peers)
    conn.executemany(
        "insert into api_device (guid, owner_id, hostname, os, username, version, last_seen, "
        "sysinfo) values (?, ?, ?, ?, ?, ?, ?, ?)",
        devices,
    )
    conn.commit()
    conn.close()
    return ids


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.95) - 1] * 1000


async def timed(browser: Browser, path: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        resp = await browser.http.get(path)
        out.append(time.perf_counter() - start)
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
    return out


async def main(n_devices: int, n_online: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pyhbb-console-bench-"))
    db = await SqliteDatabase.open(str(workdir / "db_v2.sqlite3"), migrations=MIGRATIONS)
    await db.close()
    async with (
        running_hbbs(workdir) as hbbs,
        running_api(workdir, hbbs_port=hbbs.opts.nat_port) as api,
    ):
        await api.add_user("admin", admin=True)
        await api.add_user("plain")
        t = time.perf_counter()
        ids = await asyncio.to_thread(seed, workdir / "db_v2.sqlite3", n_devices)
        print(f"seeded {n_devices} devices in {time.perf_counter() - t:.1f} s")
        core = hbbs.server.core
        now = hbbs.server.executor.clock()
        for i, peer_id in enumerate(ids[:: max(1, n_devices // n_online)][:n_online]):
            record = PeerRecord(pk=b"k" * 32)
            record.addr = (f"10.1.{i // 250 % 250}.{i % 250 + 1}", 40000)
            record.last_reg = now + 3600  # stays online for the whole run
            core.state.peers.put(peer_id, record)

        admin, plain, visitor = Browser(api.url), Browser(api.url), Browser(api.url)
        await admin.sign_in("admin")
        await plain.sign_in("plain")
        first = (await admin.http.get("/devices")).text
        assert 'class="dot on"' in first
        deep = f"/devices?after={_cursor(ids[n_devices // 2])}"
        cases = [
            ("baseline: sign-in page", visitor, "/login"),
            ("first page (50, by ID)", admin, "/devices"),
            ("page in the middle (keyset)", admin, deep),
            ("sorted by host name", admin, "/devices?sort=hostname"),
            ("sorted by last seen, newest", admin, "/devices?sort=last_seen&order=desc"),
            ("search 'host-0123'", admin, "/devices?q=host-0123"),
            ("plain user's devices", plain, "/devices"),
            ("200 per page", admin, "/devices?size=200"),
        ]
        page_ids = "&".join(f"id={i}" for i in ids[:50])
        cases.append(("live refresh, 50 IDs", admin, f"/devices/online.json?{page_ids}"))
        results = []
        for name, who, path in cases:
            await timed(who, path, 2)  # warm up
            results.append((name, *summary(await timed(who, path, rounds))))
        base = results[0][1]
        print(f"\n{n_devices} devices, {n_online} online; {rounds} requests each, ms")
        print(f"{'page':34s} {'median':>8s} {'p95':>8s} {'x baseline':>10s}")
        for name, med, p95 in results:
            print(f"{name:34s} {med:8.1f} {p95:8.1f} {med / base:10.2f}")

        # Cost on hbbs of the live refresh: the OnlineRequest decision, in the core.
        heartbeat = pb.RendezvousMessage(register_peer=pb.RegisterPeer(id=ids[0], serial=0))
        beat = heartbeat.SerializeToString()
        src = ("10.1.0.1", 40000)
        loops = 20000
        t = time.perf_counter()
        for _ in range(loops):
            core.on_udp(beat, src, now)
        per_beat = (time.perf_counter() - t) / loops
        print(f"\nhbbs core: RegisterPeer heartbeat {per_beat * 1e6:.2f} µs (baseline)")
        for count in (50, 200):
            msg = pb.OnlineRequest(peers=ids[:count])
            t = time.perf_counter()
            for _ in range(2000):
                core.queries.online(msg, now)
            per = (time.perf_counter() - t) / 2000
            print(
                f"hbbs core: OnlineRequest of {count} IDs {per * 1e6:.1f} µs "
                f"= {per / per_beat:.1f} heartbeats"
            )
        for browser in (admin, plain, visitor):
            await browser.close()


def _cursor(peer_id: str) -> str:
    from pyhbb.api.device_list import Cursor

    return Cursor(0, (peer_id,)).encode()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--online", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.devices, args.online, args.rounds))
