"""The pieces without a server: bucket counters, the lag timer's arithmetic, health
reports, probes; and the endpoint's bounds over a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import pytest
from prometheus_client.registry import CollectorRegistry

from pyhbb.observability.db_stats import READ, DatabaseStats
from pyhbb.observability.endpoint import CLIENT_TIMEOUT, MAX_CLIENTS, MetricsEndpoint
from pyhbb.observability.health import (
    CheckResult,
    Health,
    Probe,
    database_check,
    loop_check,
    probe_check,
)
from pyhbb.observability.histogram import Histogram
from pyhbb.observability.loop_lag import LoopLag
from pyhbb.observability.metrics import LoopReader
from tests.observability.scrape import fetch


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(value)
    snap = h.snapshot()
    assert snap.buckets == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert snap.count == 5 and snap.sum == pytest.approx(8.65)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def test_loop_lag_arithmetic() -> None:
    now = [100.0]
    lag = LoopLag(interval=0.025, window=10.0, clock=lambda: now[0])
    assert lag.record(100.025) == 0.0  # on time
    assert lag.record(100.250) == pytest.approx(0.2)  # due at 100.05: a 200 ms stall
    assert lag.overdue(100.250) == 0.0
    assert lag.overdue(103.275) == pytest.approx(3.0)  # a stall in progress
    assert lag.worst_recent(100.3) == pytest.approx(0.2)
    assert lag.worst_recent(103.275) == pytest.approx(3.0)
    lag.record(110.4)  # a new window: the previous one's worst is still reported
    lag.record(110.425)
    assert lag.worst_recent(110.43) == pytest.approx(10.125)
    lag.record(121.0)
    lag.record(121.025)
    assert lag.worst_recent(121.03) == pytest.approx(10.55)  # the 10.55 s stall itself
    lag.record(131.1)
    lag.record(131.125)
    lag.record(141.2)
    assert lag.worst_recent(141.2) == pytest.approx(10.05)
    assert lag.histogram.snapshot().count == 9


async def test_loop_lag_measures_a_real_stall() -> None:
    lag = LoopLag(interval=0.01)
    lag.start(asyncio.get_running_loop())
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # hold the loop
    await asyncio.sleep(0.05)
    lag.stop()
    assert lag.worst_recent(time.monotonic()) >= 0.25
    snap = lag.histogram.snapshot()
    assert snap.count >= 5
    assert snap.buckets[-1][1] - dict(snap.buckets)[0.25] >= 1  # one observation over 0.25 s


async def test_loop_lag_sees_a_short_stall_nearly_whole(caplog: pytest.LogCaptureFixture) -> None:
    """A 30 ms stall that begins right after the timer was set reads at least 30 ms less
    one interval (5 ms): a stall over 10 ms shows as one; a 150 ms stall is also logged."""
    lag = LoopLag()
    loop = asyncio.get_running_loop()
    lag.start(loop)
    time.sleep(0.03)  # hold the loop from the start: the stall covers the first due time
    await asyncio.sleep(0.02)
    assert lag.worst_recent(time.monotonic()) >= 0.025
    assert not [r for r in caplog.records if "stalled" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="pyhbb.loop"):
        await asyncio.sleep(0.01)
        time.sleep(0.15)
        await asyncio.sleep(0.02)
    lag.stop()
    warnings = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert len(warnings) == 1 and "event loop stalled for 1" in warnings[0], warnings


def test_health_report_statuses() -> None:
    health = Health("test", clock=lambda: 0.0)
    health.add("a", lambda now: CheckResult(True, "fine"))
    report = health.report()
    assert (report.status, report.http_status) == ("ok", 200)
    health.add("relay", lambda now: CheckResult(False, "down", critical=False))
    assert (health.report().status, health.report().http_status) == ("degraded", 200)
    health.add("b", lambda now: CheckResult(False, "broken"))
    report = health.report()
    assert (report.status, report.http_status) == ("failing", 503)
    body = json.loads(report.to_json())
    assert body["checks"]["b"] == {"ok": False, "critical": True, "detail": "broken"}

    def buggy(now: float) -> CheckResult:
        raise RuntimeError("bug")

    health.add("buggy", buggy)
    assert not health.report().results["buggy"].ok
    with pytest.raises(ValueError):
        health.add("a", buggy)


async def test_probe_is_stuck_after_its_timeout_and_never_doubled() -> None:
    now = [0.0]
    release = asyncio.Event()
    runs = []

    async def hangs() -> str:
        runs.append(1)
        await release.wait()
        return "done"

    probe = Probe(hangs, interval=0.01, timeout=3.0, clock=lambda: now[0])
    task = asyncio.ensure_future(probe.run_forever())
    await asyncio.sleep(0.05)
    assert runs == [1]  # one at a time
    check = probe_check(probe)
    assert check(2.0).ok
    assert probe.stuck_for(3.5) == 3.5
    assert not check(3.5).ok and "no answer for 3.5 s" in check(3.5).detail
    stats = DatabaseStats()
    assert not database_check(stats, probe)(3.5).ok
    release.set()
    await asyncio.sleep(0.05)
    assert probe.stuck_for(100.0) is None and probe.detail == "done"
    task.cancel()

    async def fails() -> str:
        raise ConnectionError("refused")

    failing = Probe(fails)
    await failing.run_once()
    assert (failing.ok, failing.detail) == (False, "refused")
    assert not probe_check(failing, critical=False)(0.0).ok


def test_database_check_follows_the_last_operation() -> None:
    stats = DatabaseStats()
    probe = Probe(lambda: asyncio.sleep(0, "ok"))
    check = database_check(stats, probe)
    assert check(0.0).ok
    stats.started(READ)
    stats.finished(READ, 0.5, 1.0, "database error: disk I/O error")
    assert not check(1.0).ok and "disk I/O error" in check(1.0).detail
    assert stats.failures[READ] == 1 and stats.in_flight[READ] == 0
    stats.started(READ)
    stats.finished(READ, 0.01, 2.0, None)
    assert check(2.0).ok
    assert stats.latency[READ].snapshot().count == 2


def test_lag_check() -> None:
    lag = LoopLag(interval=0.025, clock=lambda: 0.0)
    lag.record(0.025)
    assert loop_check(lag, 2.0)(1.0).ok
    assert not loop_check(lag, 2.0)(5.0).ok


async def test_loop_reader_gives_up_on_a_busy_loop() -> None:
    reader = LoopReader(asyncio.get_running_loop(), timeout=0.2)
    assert await asyncio.to_thread(reader.run, lambda: 42) == 42
    ran = []

    def read_while_blocked() -> object:
        return reader.run(lambda: ran.append(1))

    pending = asyncio.get_running_loop().run_in_executor(None, read_while_blocked)
    time.sleep(0.5)  # the loop cannot run the read in time
    assert await pending is None
    await asyncio.sleep(0.01)
    assert ran == []  # abandoned reads are not run later


def _endpoint() -> MetricsEndpoint:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    health = Health("test")
    health.add("a", lambda now: CheckResult(True, "fine"))
    endpoint = MetricsEndpoint(sock, CollectorRegistry(), health)
    endpoint.start()
    return endpoint


def test_endpoint_paths() -> None:
    endpoint = _endpoint()
    try:
        assert fetch(endpoint.address, "/healthz")[0] == 200
        assert fetch(endpoint.address, "/metrics")[0] == 200
        assert fetch(endpoint.address, "/")[0] == 200
        status, body = fetch(endpoint.address, "/nothing")
        assert status == 404 and b"/metrics" in body
    finally:
        endpoint.close()


def test_endpoint_serves_a_bounded_number_of_clients() -> None:
    endpoint = _endpoint()
    idle = []
    try:
        for _ in range(MAX_CLIENTS):  # each holds a thread while it says nothing
            idle.append(socket.create_connection(endpoint.address))
        time.sleep(0.3)
        extra = socket.create_connection(endpoint.address)
        extra.settimeout(3)
        assert extra.recv(100) == b""  # closed at once, unanswered
        extra.close()
        assert endpoint.refused >= 1
        # the silent clients are cut off after the timeout, and service resumes
        time.sleep(CLIENT_TIMEOUT + 0.5)
        assert fetch(endpoint.address, "/healthz")[0] == 200
    finally:
        for s in idle:
            s.close()
        endpoint.close()


def test_a_failing_collector_is_an_error_answer_not_a_dead_endpoint() -> None:
    endpoint = _endpoint()

    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("bug in a collector")

    endpoint.registry.register(Broken())  # type: ignore[arg-type]
    try:
        status, body = fetch(endpoint.address, "/metrics")
        assert status == 500 and b"service's log" in body
        assert fetch(endpoint.address, "/healthz")[0] == 200
    finally:
        endpoint.close()
