"""Device groups (admins): labels that sort devices, seen by the client's group tab."""

from __future__ import annotations

import sqlite3

from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import devices
from pyhbb.api.console.web import Call, Console
from pyhbb.api.http import ApiError
from pyhbb.store.database import Conflict

MAX_GROUP = 256


def routes(console: Console) -> list[Route]:
    async def group_list(call: Call) -> Response:
        rows = await call.ctx.read(devices.list_groups)
        return call.render("groups.html", rows=rows)

    async def create(call: Call) -> Response:
        name = call.form.text("name", "Group name", max_len=MAX_GROUP, required=True).strip()
        try:
            await call.ctx.write(lambda c: devices.create_group(c, name))
        except Conflict:
            raise ApiError(f"A device group named {name!r} exists already.", 409) from None
        return call.redirect("/groups", f"Device group {name} created.")

    async def delete(call: Call) -> Response:
        name = call.form.text("name", "Group name", max_len=MAX_GROUP, required=True)

        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute("delete from api_device_group where name = ?", (name,))
            if cur.rowcount == 0:
                raise ApiError(f"No device group named {name!r}.", 404)
            return cur.rowcount

        await call.ctx.write(job)  # its devices keep existing, in no group
        return call.redirect("/groups", f"Device group {name} deleted; its devices are in none.")

    return [
        Route("/groups", console.page(group_list, admin=True), methods=["GET"]),
        Route("/groups/create", console.page(create, admin=True), methods=["POST"]),
        Route("/groups/delete", console.page(delete, admin=True), methods=["POST"]),
    ]
