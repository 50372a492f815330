"""/healthz turns 503 when the service cannot work: a wedged event loop, a locked
database. Real servers, a real blocking call on the loop, a real SQLite lock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from pyhbb.observability.health import LOOP_STALL_LIMIT
from tests.observability.free import free_port
from tests.observability.scrape import fetch, health, parse
from tests.support.hbbs_server import running_hbbs


async def wait_for_health(
    where: tuple[str, int], status: int, timeout: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got, body = await health(where)
        if got == status:
            return body
        assert time.monotonic() < deadline, (got, body)
        await asyncio.sleep(0.25)


async def test_a_wedged_loop_fails_the_health_check(tmp_path: Path) -> None:
    where = ("127.0.0.1", free_port())
    async with running_hbbs(tmp_path, metrics=where):
        await wait_for_health(where, 200)

        def while_wedged() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            time.sleep(LOOP_STALL_LIMIT + 0.8)
            return fetch(where, "/healthz"), fetch(where, "/metrics")

        answers = asyncio.get_running_loop().run_in_executor(None, while_wedged)
        time.sleep(LOOP_STALL_LIMIT + 3.5)  # blocks the event loop: nothing on it runs
        (status, body), (metrics_status, metrics) = await answers
        report = json.loads(body)
        assert status == 503, report
        assert report["status"] == "failing"
        assert not report["checks"]["loop"]["ok"]
        assert "event loop stuck" in report["checks"]["loop"]["detail"]
        # the metrics endpoint still answers, and says so too
        assert metrics_status == 200
        scraped = parse(metrics.decode())
        assert scraped.get("pyhbb_healthy") == 0
        assert scraped.get("pyhbb_health_check_ok", check="loop") == 0
        assert scraped.get("pyhbb_event_loop_lag_max_seconds") > LOOP_STALL_LIMIT
        # the loop runs again: healthy again, and the stall is in the histogram
        await wait_for_health(where, 200)
        _, after = await asyncio.to_thread(fetch, where, "/metrics")
        lag = parse(after.decode())
        assert lag.get("pyhbb_event_loop_lag_seconds_bucket", le="2.5") < lag.get(
            "pyhbb_event_loop_lag_seconds_count"
        )


async def test_a_locked_database_fails_the_health_check(tmp_path: Path) -> None:
    where = ("127.0.0.1", free_port())
    async with running_hbbs(tmp_path, metrics=where):
        await wait_for_health(where, 200)
        other = sqlite3.connect(tmp_path / "db_v2.sqlite3", isolation_level=None)
        try:
            other.execute("begin exclusive")  # another process holds the write lock
            report = await wait_for_health(where, 503)
            assert not report["checks"]["database"]["ok"], report
            assert "no answer to a probe" in report["checks"]["database"]["detail"]
            assert report["checks"]["loop"]["ok"]
            # held past the 5 s busy timeout: the probe's write fails, and says why
            deadline = time.monotonic() + 15
            while "last operation failed" not in report["checks"]["database"]["detail"]:
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.25)
                status, report = await health(where)
                assert status == 503, report
            assert "locked" in report["checks"]["database"]["detail"]
        finally:
            other.execute("rollback")
            other.close()
        report = await wait_for_health(where, 200)
        assert report["checks"]["database"]["ok"]
        _, metrics = await asyncio.to_thread(fetch, where, "/metrics")
        assert parse(metrics.decode()).get("pyhbb_database_failures_total", operation="write") >= 1
