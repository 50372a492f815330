"""The API service's metrics: requests by route template and status, latency, logins,
heartbeats, audit events; and the hbbs probe of its health check.

Requests are counted by :class:`RequestMetrics`, an ASGI middleware that keeps plain
counters (a dict increment and a bucket count per request); :func:`api_families` turns
them and the service's own counters into families on the event loop at scrape time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client.core import Metric
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyhbb.api.context import ApiContext
from pyhbb.observability.histogram import Histogram
from pyhbb.observability.metrics import counter, gauge, histogram

UNMATCHED = "unmatched"  # the route label of requests no route matched (404)
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
# A request costs ~100 µs to seconds (a password hash, a slow database): finer at the low end.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """ASGI middleware counting HTTP requests by route template (``/api/ab/peer/{guid}``,
    never the path itself), method and status, with their latency per route."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.templates: dict[Any, str] = {}
        for route in routes:
            if isinstance(route, Route):
                # a handler serving two paths would be ambiguous: name both
                known = self.templates.get(route.endpoint)
                if known is None:
                    self.templates[route.endpoint] = route.path
                elif route.path not in known.split("|"):
                    self.templates[route.endpoint] = f"{known}|{route.path}"
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.latency: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app fails before it answers (uvicorn then answers 500)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router stored the endpoint it chose in the scope it was given
            route = self.templates.get(scope.get("endpoint"), UNMATCHED)
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.requests[route, method, str(status)] += 1
            latency = self.latency.get(route)
            if latency is None:
                latency = self.latency[route] = Histogram(REQUEST_BUCKETS)
            latency.observe(time.perf_counter() - started)


def api_families(requests: RequestMetrics, ctx: ApiContext) -> list[Metric]:
    """Every API family, read on the event loop."""
    beats = ctx.heartbeats
    return [
        counter(
            "pyhbb_api_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            {key: float(n) for key, n in requests.requests.items()},
        ),
        histogram(
            "pyhbb_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            {(route,): h.snapshot() for route, h in requests.latency.items()},
        ),
        counter(
            "pyhbb_api_logins",
            "Login attempts: ok, failed (bad credentials or disabled), rate_limited",
            ["result"],
            {(r,): ctx.accounts.login_results[r] for r in ("ok", "failed", "rate_limited")},
        ),
        counter(
            "pyhbb_api_heartbeats",
            "Device heartbeats received (stored in batches)",
            [],
            {(): beats.received},
        ),
        counter(
            "pyhbb_api_heartbeats_dropped",
            "Heartbeats dropped because the pending batch was full",
            [],
            {(): beats.dropped},
        ),
        gauge(
            "pyhbb_api_heartbeats_pending",
            "Heartbeats waiting for the next batch write",
            [],
            {(): len(beats.pending)},
        ),
        counter(
            "pyhbb_api_heartbeat_flushes",
            "Batch writes of heartbeats: ok, or failed (kept for the next one)",
            ["result"],
            {(r,): ctx.counts["heartbeat_flush", r] for r in ("ok", "failed")},
        ),
        counter(
            "pyhbb_api_audit_events",
            "Audit posts by kind (conn, file, alarm) and result (stored, unknown_device)",
            ["kind", "result"],
            {
                (kind, result): ctx.counts[f"audit_{kind}", result]
                for kind in ("conn", "file", "alarm")
                for result in ("stored", "unknown_device")
            },
        ),
    ]


def hbbs_probe(ctx: ApiContext) -> Callable[[], Awaitable[str]]:
    """An online query to hbbs, as the device list makes one."""
    presence = ctx.presence

    async def probe() -> str:
        if await presence.online(["(:api-health:)"]) is None:
            raise ConnectionError(f"hbbs at {presence.host}:{presence.port} does not answer")
        return f"hbbs at {presence.host}:{presence.port} answers online queries"

    return probe
