"""Audit ingestion (docs/api.md #27-#29): 200 with an empty body once stored (or a
repeat of a stored nonce); 400 ID_NOT_FOUND for devices hbbs does not know."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import audit
from pyhbb.api.context import ApiContext, endpoint
from pyhbb.api.http import ApiError, Fields, body_object, empty


async def _ingest(
    request: Request, ctx: ApiContext, parse: Callable[[Fields, str], audit.Event]
) -> Response:
    body = await body_object(request, allow_empty=False)
    raw = (await request.body()).decode("utf-8", "replace")
    event = parse(body, raw)
    user_id = None
    if event.proof.uuid is None and request.headers.get("authorization"):
        # The controlling side's note names the remote device and carries a user token.
        session = await ctx.accounts.authenticate(request.headers.get("authorization"))
        user_id = session.user.id
    now = ctx.clock()
    kind = f"audit_{event.table.removeprefix('api_audit_')}"  # audit_conn, _file, _alarm
    if not await ctx.write(lambda c: audit.store(c, event, now, user_id)):
        ctx.counts[kind, "unknown_device"] += 1
        raise ApiError(audit.ID_NOT_FOUND, 400)
    ctx.counts[kind, "stored"] += 1
    return empty()


@endpoint
async def conn(request: Request, ctx: ApiContext) -> Response:
    return await _ingest(request, ctx, audit.conn_event)


@endpoint
async def file(request: Request, ctx: ApiContext) -> Response:
    return await _ingest(request, ctx, audit.file_event)


@endpoint
async def alarm(request: Request, ctx: ApiContext) -> Response:
    return await _ingest(request, ctx, audit.alarm_event)


routes = [
    Route("/api/audit/conn", conn, methods=["POST"]),
    Route("/api/audit/file", file, methods=["POST"]),
    Route("/api/audit/alarm", alarm, methods=["POST"]),
]
