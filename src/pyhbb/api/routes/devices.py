"""Users, device list and device groups (docs/api.md #21-#23); heartbeat and sysinfo
(#24, #25) from the device side."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import devices, users
from pyhbb.api.auth import Session
from pyhbb.api.context import ApiContext, endpoint, user_endpoint
from pyhbb.api.http import body_object, ok_json, page, paged, text


@user_endpoint
async def user_list(request: Request, ctx: ApiContext, session: Session) -> Response:
    """Admins see every user; a user sees themself."""
    offset, limit = page(request)
    only_enabled = request.query_params.get("status") == "1"
    if not session.user.is_admin:
        found = [session.user] if offset == 0 else []
        return paged(1, [u.payload() for u in found])
    total, rows = await ctx.read(lambda c: users.page(c, offset, limit, only_enabled))
    return paged(total, [u.payload() for u in rows])


@user_endpoint
async def device_list(request: Request, ctx: ApiContext, session: Session) -> Response:
    """Each entry carries ``is_online`` (live from hbbs; null when hbbs does not answer)
    and ``last_online`` (now when online, else the last API call, ISO 8601 UTC)."""
    offset, limit = page(request)
    total, rows = await ctx.read(lambda c: devices.device_page(c, session.user, offset, limit))
    online = await ctx.presence.online([r.device_id for r in rows]) if rows else {}
    now = ctx.clock()
    data: list[dict[str, Any]] = []
    for row in rows:
        is_online = None if online is None else online.get(row.device_id, False)
        seen = [t for t in (row.last_seen, ctx.heartbeats.last_seen(row.device_id)) if t]
        last = now if is_online else (max(seen) if seen else None)
        data.append(row.payload(is_online, last))
    return paged(total, data)


@user_endpoint
async def device_groups(request: Request, ctx: ApiContext, session: Session) -> Response:
    offset, limit = page(request)
    total, names = await ctx.read(lambda c: devices.group_page(c, session.user, offset, limit))
    return paged(total, [{"name": name} for name in names])


@endpoint
async def heartbeat(request: Request, ctx: ApiContext) -> Response:
    # The hot path (every device, every 15 s): validate types, note it in memory; the uuid
    # is checked against peer when the batch is written.
    body = await body_object(request, allow_empty=False)
    device_id = body.required_text("id", max_len=devices.MAX_DEVICE_ID)
    uuid_text = body.text("uuid", max_len=devices.MAX_UUID_TEXT)
    body.integer("ver")
    body.integer("modified_at")
    wants_sysinfo = ctx.heartbeats.beat(device_id, uuid_text, ctx.client_ip(request), ctx.clock())
    if ctx.heartbeats.full:
        request.app.state.flush_now.set()
    return ok_json({"sysinfo": 1} if wants_sysinfo else {})


@endpoint
async def sysinfo(request: Request, ctx: ApiContext) -> Response:
    info = devices.Sysinfo.from_fields(await body_object(request, allow_empty=False))
    ip, now = ctx.client_ip(request), ctx.clock()
    stored = await ctx.write(lambda c: devices.store_sysinfo(c, info, ip, now))
    if not stored:
        return text(devices.ID_NOT_FOUND)
    ctx.heartbeats.forget_wanted(info.proof.device_id)
    return text(devices.SYSINFO_UPDATED)


device_side = [
    Route("/api/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/sysinfo", sysinfo, methods=["POST"]),
]
routes = [
    Route("/api/users", user_list, methods=["GET"]),
    Route("/api/peers", device_list, methods=["GET"]),
    Route("/api/device-group/accessible", device_groups, methods=["GET"]),
]
