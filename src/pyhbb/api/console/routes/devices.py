"""The device list (live online state, search, sort, keyset pages, CSV) and one device."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
import sqlite3
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pyhbb.api import device_list as dl
from pyhbb.api import devices, users
from pyhbb.api.console.servers import ConsoleUnavailable
from pyhbb.api.console.web import Call, Console, fmt_time
from pyhbb.api.http import ApiError

log = logging.getLogger("pyhbb.api.console")

PAGE_SIZES = (20, 50, 100, 200)
MAX_ONLINE_IDS = 500
EXPORT_BATCH = dl.MAX_PAGE
SEARCH_INDEX_WAIT = 15.0  # just after start: loading it is quicker than a scan at 1M
CSV_COLUMNS = (
    "id", "online", "hostname", "username", "os", "version", "owner", "group", "note",
    "disabled", "registered", "registration_ip", "last_seen", "last_ip",
)  # fmt: skip


def query_from(call: Call) -> dl.DeviceQuery:
    q = call.request.query_params
    size_text = q.get("size", "50")
    if not size_text.isdigit() or int(size_text) not in PAGE_SIZES:
        raise ApiError(f"'size' is one of {', '.join(map(str, PAGE_SIZES))}")
    sort = q.get("sort", "id")
    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ApiError("'order' is asc or desc")
    after, before = q.get("after"), q.get("before")
    return dl.DeviceQuery(
        text=call.query("q", max_len=dl.MAX_SEARCH).strip(),
        owner=q.get("owner") if "owner" in q and call.user.is_admin else None,
        group=q.get("group") if "group" in q else None,
        sort=sort,
        descending=order == "desc",
        after=dl.Cursor.decode(after) if after else None,
        before=dl.Cursor.decode(before) if before else None,
        limit=int(size_text),
    )


def link(query: dl.DeviceQuery, **changes: Any) -> str:
    """The list's URL for ``query`` with ``changes`` (cursors encoded, defaults left out)."""
    params: dict[str, Any] = {
        "q": query.text,
        "owner": query.owner,
        "group": query.group,
        "sort": query.sort,
        "order": "desc" if query.descending else "asc",
        "size": query.limit,
    }
    params.update(changes)
    defaults = {"sort": "id", "order": "asc", "size": 50, "q": ""}
    clean = {
        k: (v.encode() if isinstance(v, dl.Cursor) else v)
        for k, v in params.items()
        if v is not None and defaults.get(k) != v
    }
    return "/devices" + ("?" + urlencode(clean) if clean else "")


def csv_cell(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def candidates(call: Call, query: dl.DeviceQuery) -> dl.Candidates:
    """What the search index finds for the query's text (off the event loop: ~4 ms of
    CPU at 100k devices); None without text, or if the index is not loaded in time."""
    if not query.text:
        return None
    index = call.ctx.device_search
    await index.wait_ready(SEARCH_INDEX_WAIT)
    return await asyncio.to_thread(dl.search, index, query.text)


def lag_text(seconds: float) -> str:
    """``reread_every`` for people: "a minute", "4 minutes"."""
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


async def online_states(call: Call, ids: list[str]) -> dict[str, bool] | None:
    return await call.ctx.presence.online(ids) if ids else {}


UNSUPPORTED_IN_CLUSTER = "unsupported in cluster mode"  # hbbs console's answer


async def tell_hbbs_disabled(call: Call, device_id: str, disabled: bool) -> str:
    """Tell hbbs of a disable or enable already written; a sentence for the admin."""
    command, done = ("disable-peer", "disabled") if disabled else ("enable-peer", "enabled")
    try:
        answer = (await call.console.hbbs.run(command, device_id)).strip()
    except (ConsoleUnavailable, ValueError) as e:
        return f" hbbs could not be told, so this takes effect when hbbs restarts ({e})."
    if answer == done:
        return (
            " hbbs now answers for it as for an offline device."
            if disabled
            else " It can be reached again."
        )
    if answer == UNSUPPORTED_IN_CLUSTER:
        return (
            " hbbs runs in cluster mode, where disabling is not enforced: the device can "
            "still be reached."
        )
    log.warning("hbbs answered %r to %s %s", answer[:200], command, device_id)
    if answer.startswith("refused"):
        return f" hbbs refused it ({answer[:120]}): the device can still be reached."
    return f" hbbs did not confirm it, so this takes effect when hbbs restarts ({answer[:80]!r})."


async def hbbs_disable_note(call: Call) -> str:
    """Why disabling would not take effect in hbbs now ("" when it would)."""
    try:
        answer = (await call.console.hbbs.run("disabled-peers")).strip()
    except ConsoleUnavailable as e:
        return (
            f"hbbs's console did not answer, so a change reaches hbbs only when it restarts ({e})."
        )
    if answer == UNSUPPORTED_IN_CLUSTER:
        return (
            "Not enforced: hbbs runs in cluster mode, where disabling only marks the device "
            "here and in the client's device list; it can still be reached."
        )
    if not answer[:1].isdigit():  # an hbbs without the command answers nothing
        return "This hbbs did not say that it enforces disabling: the device may stay reachable."
    return ""


def routes(console: Console) -> list[Route]:
    async def device_list(call: Call) -> Response:
        query = query_from(call)
        viewer = call.user
        found = await candidates(call, query)
        # Count and page on two reader threads at once.
        page, (total, capped) = await asyncio.gather(
            call.ctx.read(lambda c: dl.rows(c, viewer, query, found)),
            call.ctx.read(lambda c: dl.count(c, viewer, query, found)),
        )
        online = await online_states(call, [d.device_id for d in page.devices])

        def names(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
            groups = [g for g, _ in devices.list_groups(conn)]
            return (users.names(conn) if viewer.is_admin else []), groups

        owners, groups = await call.ctx.read(names)
        return call.render(
            "devices.html",
            page=page,
            total=total,
            capped=capped,
            online=online,
            query=query,
            link=lambda **kw: link(query, after=None, before=None, **kw),
            next_link=link(query, after=page.next) if page.next else "",
            prev_link=link(query, before=page.prev) if page.prev else "",
            sorts=dl.SORTS,
            sizes=PAGE_SIZES,
            owners=owners,
            groups=groups,
            csv_link="/devices.csv" + link(query, after=None, before=None)[len("/devices") :],
            search_lag=lag_text(call.ctx.device_search.reread_every),
        )

    async def online_json(call: Call) -> Response:
        ids = call.request.query_params.getlist("id")
        if len(ids) > MAX_ONLINE_IDS or any(len(i) > devices.MAX_DEVICE_ID for i in ids):
            raise ApiError(f"at most {MAX_ONLINE_IDS} IDs of at most 100 characters")
        viewer = call.user
        visible = await call.ctx.read(lambda c: dl.visible_ids(c, viewer, ids))
        online = await online_states(call, visible)
        return JSONResponse(
            {"online": online, "at": call.ctx.clock()}, headers={"Cache-Control": "no-store"}
        )

    async def export_csv(call: Call) -> Response:
        query = dl.DeviceQuery(**{**query_from(call).__dict__, "limit": EXPORT_BATCH})
        viewer = call.user
        found = await candidates(call, query)

        async def body() -> AsyncIterator[bytes]:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            cursor: dl.Cursor | None = None
            while True:
                batch = dl.DeviceQuery(**{**query.__dict__, "after": cursor, "before": None})

                def job(conn: sqlite3.Connection, q: dl.DeviceQuery = batch) -> dl.DevicePage:
                    return dl.rows(conn, viewer, q, found)

                page = await call.ctx.read(job)
                online = await online_states(call, [d.device_id for d in page.devices])
                for d in page.devices:
                    state = "" if online is None else ("yes" if online.get(d.device_id) else "no")
                    writer.writerow(
                        csv_cell(v)
                        for v in (
                            d.device_id,
                            state,
                            d.hostname,
                            d.username,
                            d.os,
                            d.version,
                            d.owner,
                            d.group,
                            d.note,
                            "yes" if d.disabled else "no",
                            d.created_at,
                            d.registered_ip,
                            fmt_time(d.last_seen),
                            d.last_ip,
                        )
                    )
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
                if page.next is None:
                    return
                cursor = page.next

        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="devices.csv"',
                "Cache-Control": "no-store",
            },
        )

    async def device_page(call: Call) -> Response:
        device_id = call.query("id", max_len=devices.MAX_DEVICE_ID)
        viewer = call.user

        def job(
            conn: sqlite3.Connection,
        ) -> tuple[dl.Device | None, list[Any], list[str], list[str]]:
            device = dl.one(conn, viewer, device_id)
            if device is None:
                return None, [], [], []
            logins = conn.execute(
                "select l.at, l.name, l.ip, l.ok from api_login_log l where l.device_id = ? "
                "order by l.id desc limit 10",
                (device_id,),
            ).fetchall()
            owners = users.names(conn) if viewer.is_admin else []
            groups = [g for g, _ in devices.list_groups(conn)] if viewer.is_admin else []
            return device, logins, owners, groups

        device, logins, owners, groups = await call.ctx.read(job)
        if device is None:
            raise ApiError(f"No device with ID {device_id!r} that you may see.", 404)
        online = await online_states(call, [device.device_id])
        disable_note = await hbbs_disable_note(call) if viewer.is_admin else ""
        return call.render(
            "device.html",
            device=device,
            online=online,
            logins=logins,
            owners=owners,
            groups=groups,
            disable_note=disable_note,
        )

    async def edit(call: Call) -> Response:
        form = call.form
        device_id = form.text("id", "Device ID", max_len=devices.MAX_DEVICE_ID, required=True)
        note = form.text("note", "Note", max_len=dl.MAX_NOTE)
        owner = form.text("owner", "Owner", max_len=users.MAX_NAME).strip()
        group = form.text("group", "Device group", max_len=256).strip()

        def job(conn: sqlite3.Connection) -> None:
            dl.set_note(conn, device_id, note)
            dl.set_owner(conn, device_id, owner)
            if not devices.assign_group(conn, device_id, group or None):
                raise ApiError(f"no device with ID {device_id!r} is registered", 404)

        await call.ctx.write(job)
        log.info("device %s changed by %s", device_id, call.user.name)
        return call.redirect(f"/device?{urlencode({'id': device_id})}", "Saved.")

    async def disable(call: Call) -> Response:
        form = call.form
        device_id = form.text("id", "Device ID", max_len=devices.MAX_DEVICE_ID, required=True)
        disabled = form.text("disabled", "Disabled", max_len=1) == "1"
        await call.ctx.write(lambda c: dl.set_disabled(c, device_id, disabled))
        log.info(
            "device %s %s by %s", device_id, "disabled" if disabled else "enabled", call.user.name
        )
        word = "disabled" if disabled else "enabled again"
        told = await tell_hbbs_disabled(call, device_id, disabled)
        return call.redirect(f"/device?{urlencode({'id': device_id})}", f"Device {word}.{told}")

    async def delete(call: Call) -> Response:
        form = call.form
        device_id = form.text("id", "Device ID", max_len=devices.MAX_DEVICE_ID, required=True)
        if not form.flag("confirm"):
            raise ApiError("Tick the box to confirm the deletion.")
        await call.ctx.write(lambda c: dl.delete(c, device_id))
        log.info("device %s deleted by %s", device_id, call.user.name)
        try:
            # hbbs keeps a record in memory: make it forget, so the ID registers anew.
            await call.console.hbbs.run("forget-peer", device_id)
            told = ""
        except (ConsoleUnavailable, ValueError) as e:
            told = f" hbbs could not be told ({e}); the ID registers again once hbbs restarts."
        return call.redirect(
            "/devices",
            f"Device {device_id} deleted; the ID can register again.{told}",
        )

    return [
        Route("/devices", console.page(device_list), methods=["GET"]),
        Route("/devices/online.json", console.page(online_json), methods=["GET"]),
        Route("/devices.csv", console.page(export_csv), methods=["GET"]),
        Route("/device", console.page(device_page), methods=["GET"]),
        Route("/device/edit", console.page(edit, admin=True), methods=["POST"]),
        Route("/device/disable", console.page(disable, admin=True), methods=["POST"]),
        Route("/device/delete", console.page(delete, admin=True), methods=["POST"]),
    ]
