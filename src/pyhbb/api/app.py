"""Assembly of the API service: routes, conventions, and what runs beside the requests.

The client's routes live under ``/api/``; everything else is the web console
(docs/api.md #36, :mod:`pyhbb.api.console`), over the same repositories. At start the
database is opened (migrations applied) and a flusher writes heartbeats in batches;
at stop the last batch is written before the database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from pyhbb.api import devices, jobs
from pyhbb.api.auth import Accounts
from pyhbb.api.console.app import console_routes
from pyhbb.api.console.security import SECURITY_HEADERS
from pyhbb.api.context import ApiContext
from pyhbb.api.heartbeats import HeartbeatBuffer
from pyhbb.api.http import BodyCap, error
from pyhbb.api.login_limits import Bucket, LoginLimiter
from pyhbb.api.options import ApiOptions, database_path
from pyhbb.api.passwords import Passwords
from pyhbb.api.presence import HbbsPresence
from pyhbb.api.routes import account, addressbook, audit
from pyhbb.api.routes import devices as device_routes
from pyhbb.api.schema import MIGRATIONS
from pyhbb.api.tokens import TokenPolicy
from pyhbb.observability.api import RequestMetrics, api_families, hbbs_probe
from pyhbb.observability.health import Probe
from pyhbb.observability.metrics import Monitoring
from pyhbb.store.database import SqliteDatabase, StoreError

log = logging.getLogger("pyhbb.api")

FLUSH_INTERVAL = 5.0
OPENAPI = Path(__file__).with_name("openapi.json")


def _openapi(spec: bytes) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    return serve


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code if 400 <= exc.status_code < 500 else 400
    messages = {404: "not found", 405: "method not allowed"}
    browser = "text/html" in request.headers.get("accept", "")
    if browser and not request.url.path.startswith("/api/"):  # someone in the console
        message = {404: "There is no such page.", 405: "This address does not take that."}
        return HTMLResponse(
            f"<!doctype html><title>{status}</title><p>{message.get(status, 'Bad request.')} "
            '<a href="/devices">Devices</a></p>',
            status_code=status,
            headers=SECURITY_HEADERS,
        )
    return error(messages.get(status, exc.detail), status)


async def flush_heartbeats(ctx: ApiContext) -> None:
    """Write pending heartbeats in one transaction; on failure keep them for next time."""
    beats = ctx.heartbeats.take()
    if not beats:
        return
    try:
        wanted = await jobs.write(ctx.db, lambda c: devices.flush_heartbeats(c, beats))
    except StoreError as e:
        log.warning("could not store %d heartbeats (will retry): %s", len(beats), e)
        ctx.counts["heartbeat_flush", "failed"] += 1
        ctx.heartbeats.restore(beats)
        return
    ctx.counts["heartbeat_flush", "ok"] += 1
    ctx.heartbeats.want_sysinfo(wanted)


async def _flusher(ctx: ApiContext, flush_now: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flush_now.wait(), FLUSH_INTERVAL)
        flush_now.clear()
        await flush_heartbeats(ctx)


def build_app(
    options: ApiOptions,
    *,
    passwords: Passwords | None = None,
    clock: Callable[[], float] = time.time,
    metrics_socket: socket.socket | None = None,
) -> ASGIApp:
    """The ASGI application; the database opens in its lifespan (uvicorn runs it).

    /metrics and /healthz are served on ``metrics_socket`` when given (``pyhbb api``
    binds it at start, like the API's port), else at ``options.metrics`` if set."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        monitoring: Monitoring | None = None
        if metrics_socket is not None:
            monitoring = Monitoring("api", metrics_socket)
        elif options.metrics is not None:
            monitoring = Monitoring.bind("api", options.metrics)
        try:
            db = await SqliteDatabase.open(
                database_path(options.db_url, options.workdir),
                readers=options.db_readers,
                migrations=MIGRATIONS,
            )
        except BaseException:
            if monitoring is not None:
                await monitoring.stop()
            raise
        limiter = LoginLimiter(
            per_ip=Bucket(options.login_burst_per_ip, 1 / 3),
            per_user=Bucket(options.login_failures_per_user, 1 / 30),
        )
        policy = TokenPolicy(ttl=options.token_days * 86400)
        ctx = ApiContext(
            options=options,
            db=db,
            accounts=Accounts(db, passwords or Passwords(), limiter, policy, clock),
            heartbeats=HeartbeatBuffer(),
            presence=HbbsPresence(options.hbbs_host, options.hbbs_port),
            clock=clock,
        )
        app.state.api = ctx
        app.state.flush_now = asyncio.Event()
        flusher = asyncio.create_task(_flusher(ctx, app.state.flush_now))
        log.info("API server database %s ready", db.path)
        if monitoring is not None:
            monitoring.add_loop_families(lambda: api_families(request_metrics, ctx))
            monitoring.watch_database(db)
            # not critical: the API still serves all but the online column without hbbs
            probe = Probe(hbbs_probe(ctx), interval=10.0, timeout=5.0)
            monitoring.add_probe("hbbs", probe, critical=False)
            monitoring.start()
        try:
            yield
        finally:
            if monitoring is not None:
                await monitoring.stop()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await flush_heartbeats(ctx)
            await db.close()
            log.info("API server stopped")

    # Starlette tries routes in order: the device side (a heartbeat per device every 15 s)
    # comes first, so the hot path is matched at once.
    routes = [
        *device_routes.device_side,
        *audit.routes,
        *account.routes,
        *addressbook.routes,
        *device_routes.routes,
        Route("/api/openapi.json", _openapi(OPENAPI.read_bytes()), methods=["GET"]),
        *console_routes(options),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    request_metrics = RequestMetrics(BodyCap(app, options.max_body), routes)
    return request_metrics
