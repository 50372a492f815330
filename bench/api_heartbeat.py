"""API server benchmark: device heartbeats per second, and login / address-book latency.

    .venv/bin/python bench/api_heartbeat.py [--seconds 10] [--devices 10000] [--users 1000]

1. Heartbeats with a new TCP connection per request, as the RustDesk client sends them,
   against ``pyhbb api`` and against a bare Starlette endpoint that only parses the JSON
   (bench/api_reference.py), both served by uvicorn with uvloop and httptools, driven by
   the same closed-loop load generator in the same run; the figure is the ratio (goal
   >= 0.8). The server's CPU time per request gives what one core would sustain and, at
   one heartbeat per 15 s, how many devices that is.
2. With ``--devices`` peers (rows of ``peer``, as hbbs writes them) and ``--users`` accounts
   in the database: login latency, the address-book pull a 1.4.x client makes after login
   (currentUser, ab/personal, ab/settings, ab/shared/profiles, ab/peers, ab/tags) and an
   admin's first page of the device list.

Everything runs on loopback in a temporary directory; every process started is stopped by
PID. Results are printed; ``--write`` puts them in the "API server" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from hbbs_procs import CLK_TCK, die_with_parent  # noqa: E402

PYTHON = sys.executable
BODY = json.dumps({"id": "123456789", "uuid": "AAAAAAAAAAAAAAAAAAAAAA==", "ver": 1004009}).encode()


def request_bytes(port: int) -> bytes:
    return (
        b"POST /api/heartbeat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (port, len(BODY))
    ) + BODY


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RUST_LOG": "warn", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        args, cwd=cwd, env=env, preexec_fn=die_with_parent, stdout=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def hammer(port: int, seconds: float, concurrency: int) -> tuple[int, int]:
    """Closed loop: ``concurrency`` workers, each connect / POST / read / close."""
    payload = request_bytes(port)
    done = errors = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(payload)
                answer = await reader.read(4096)
                writer.close()
                if answer.startswith(b"HTTP/1.1 200"):
                    done += 1
                else:
                    errors += 1
            except OSError:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


def measure(port: int, pid: int, seconds: float, concurrency: int) -> dict[str, float]:
    import uvloop

    uvloop.run(hammer(port, 1.0, concurrency))  # warm-up
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    done, errors = uvloop.run(hammer(port, seconds, concurrency))
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return {
        "rate": done / (t1 - t0),
        "errors": errors,
        "us_per_req": (cpu1 - cpu0) / max(done, 1) * 1e6,
        "cores": (cpu1 - cpu0) / (t1 - t0),
    }


def heartbeats(workdir: Path, seconds: float, concurrency: int, rounds: int) -> dict[str, object]:
    ref_port, api_port = free_port(), free_port()
    ref = start([PYTHON, str(ROOT / "bench" / "api_reference.py"), str(ref_port)], workdir)
    api = start(
        [
            PYTHON,
            "-m",
            "pyhbb.api.cli",
            "-p",
            str(api_port),
            "-b",
            "127.0.0.1",
            "--hbbs",
            "127.0.0.1:1",
        ],
        workdir,
    )
    try:
        wait_port(ref_port)
        wait_port(api_port)
        runs: dict[str, list[dict[str, float]]] = {"reference": [], "pyhbb": []}
        for _ in range(rounds):  # interleaved, so both see the same machine
            runs["reference"].append(measure(ref_port, ref.pid, seconds, concurrency))
            runs["pyhbb"].append(measure(api_port, api.pid, seconds, concurrency))
    finally:
        stop(api)
        stop(ref)
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    return {"runs": runs, "median": med}


def seed(workdir: Path, devices: int, users: int, book_peers: int) -> None:
    """hbbs's peer rows, ``users`` accounts (one Argon2 hash shared, to save time), and a
    personal book of ``book_peers`` entries for user0."""
    from argon2 import PasswordHasher

    subprocess.run(
        [PYTHON, "-m", "pyhbb.cli", "user", "add", "admin", "--admin"],
        cwd=workdir,
        input=b"bench\n",
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    hashed = PasswordHasher().hash("bench")
    conn = sqlite3.connect(workdir / "db_v2.sqlite3", isolation_level=None)
    conn.execute("begin")
    conn.executemany(
        "insert into peer (guid, id, uuid, pk, info) values (?, ?, ?, ?, ?)",
        (
            (
                uuid.uuid4().bytes,
                f"{100000000 + i}",
                os.urandom(16),
                os.urandom(32),
                '{"ip":"192.0.2.1"}',
            )
            for i in range(devices)
        ),
    )
    conn.executemany(
        "insert into api_user (guid, name, password, is_admin, status, created_at) "
        "values (?, ?, ?, 0, 1, 0)",
        ((uuid.uuid4().bytes, f"user{i}", hashed) for i in range(users - 1)),
    )
    (owner,) = conn.execute("select id from api_user where name = 'user0'").fetchone()
    conn.execute(
        "insert into api_ab (guid, owner_id, personal, name, created_at) values (?, ?, 1, ?, 0)",
        (str(uuid.uuid4()), owner, "My address book"),
    )
    (book,) = conn.execute("select id from api_ab where owner_id = ?", (owner,)).fetchone()
    conn.executemany(
        "insert into api_ab_peer (ab_id, peer_id, alias, tags) values (?, ?, ?, ?)",
        ((book, f"{100000000 + i}", f"pc{i}", '["office"]') for i in range(book_peers)),
    )
    conn.execute("insert into api_ab_tag (ab_id, name, color) values (?, 'office', 1)", (book,))
    conn.execute("commit")
    conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(port: int, samples: int) -> dict[str, list[float]]:
    url = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {"login": [], "pull": [], "device list page": []}
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
    async with httpx.AsyncClient(base_url=url, trust_env=False, limits=limits) as http:
        admin = (
            await http.post(
                "/api/login", json={"username": "admin", "password": "bench", "id": "1", "uuid": ""}
            )
        ).json()
        admin_auth = {"Authorization": f"Bearer {admin['access_token']}"}
        for i in range(samples):
            t0 = time.perf_counter()
            resp = await http.post(
                "/api/login",
                json={"username": f"user{i % 5}", "password": "bench", "id": f"d{i}", "uuid": ""},
                # many clients, not one address hitting the per-IP login limit
                headers={"X-Real-IP": f"198.51.100.{i % 250}"},
            )
            assert resp.status_code == 200, resp.text
            out["login"].append(time.perf_counter() - t0)
            auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}
            if i % 5:
                continue
            t0 = time.perf_counter()
            await http.post("/api/currentUser", headers=auth, json={"id": f"d{i}"})
            guid = (await http.post("/api/ab/personal", headers=auth)).json()["guid"]
            await http.post("/api/ab/settings", headers=auth)
            await http.post("/api/ab/shared/profiles?current=1&pageSize=100", headers=auth)
            current, total = 1, 1
            while (current - 1) * 100 < total:
                page = await http.post(
                    f"/api/ab/peers?current={current}&pageSize=100&ab={guid}", headers=auth
                )
                total = page.json()["total"]
                current += 1
            await http.post(f"/api/ab/tags/{guid}", headers=auth)
            out["pull"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            listed = await http.get("/api/peers?current=1&pageSize=100", headers=admin_auth)
            assert listed.json()["total"] >= 1
            out["device list page"].append(time.perf_counter() - t0)
    return out


def scale(
    workdir: Path, devices: int, users: int, book_peers: int, samples: int
) -> dict[str, object]:
    seed(workdir, devices, users, book_peers)
    port = free_port()
    # hbbs is not running: the device list then reports the online state as unknown after
    # the 2 s connection attempt is refused at once (loopback), as when hbbs restarts.
    api = start(
        [
            PYTHON,
            "-m",
            "pyhbb.api.cli",
            "-p",
            str(port),
            "-b",
            "127.0.0.1",
            "--hbbs",
            "127.0.0.1:1",
        ],
        workdir,
    )
    try:
        wait_port(port)
        import uvloop

        lat = uvloop.run(latencies(port, samples))
    finally:
        stop(api)
    return {
        name: {
            "n": len(v),
            "p50_ms": percentile(v, 0.5) * 1000,
            "p99_ms": percentile(v, 0.99) * 1000,
        }
        for name, v in lat.items()
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    p.add_argument("--concurrency", type=int, default=32, help="load generator connections")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--book-peers", type=int, default=250, help="entries in the pulled book")
    p.add_argument("--samples", type=int, default=50, help="logins measured (pulls: 1 in 5)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hb_dir, scale_dir = Path(tmp, "hb"), Path(tmp, "scale")
        hb_dir.mkdir()
        scale_dir.mkdir()
        hb = heartbeats(hb_dir, args.seconds, args.concurrency, args.rounds)
        sc = scale(scale_dir, args.devices, args.users, args.book_peers, args.samples)
    med = hb["median"]
    assert isinstance(med, dict)
    ref, ours = med["reference"], med["pyhbb"]
    projection = 1e6 / ours["us_per_req"]
    print(json.dumps({"heartbeats": hb, "scale": sc}, indent=1))
    print()
    print(
        "| server | heartbeats/s | × reference | server CPU µs/req | server cores | "
        "1-core projection | devices per core at 1/15 s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, m in (("reference (bare Starlette)", ref), ("pyhbb api", ours)):
        proj = 1e6 / m["us_per_req"]
        print(
            f"| {name} | {m['rate']:,.0f} | {m['rate'] / ref['rate']:.2f} | "
            f"{m['us_per_req']:.0f} | {m['cores']:.2f} | {proj:,.0f}/s | {proj * 15:,.0f} |"
        )
    print()
    print(
        f"pyhbb api / reference: {ours['rate'] / ref['rate']:.2f} (goal >= 0.8); "
        f"CPU per request ratio {ours['us_per_req'] / ref['us_per_req']:.2f}; "
        f"{projection * 15:,.0f} devices per core"
    )
    print()
    print(f"| at {args.devices:,} devices, {args.users:,} users | samples | p50 | p99 |")
    print("|---|---|---|---|")
    for name, s in sc.items():
        assert isinstance(s, dict)
        print(f"| {name} | {s['n']} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
