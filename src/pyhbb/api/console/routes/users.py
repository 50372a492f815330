"""Users (admins): create, disable, reset password, admin flag; one user's page."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import tokens, users
from pyhbb.api.console import sessions
from pyhbb.api.console.web import Call, Console
from pyhbb.api.http import ApiError
from pyhbb.api.passwords import MAX_PASSWORD


def user_link(name: str) -> str:
    return "/user?" + urlencode({"name": name})


def routes(console: Console) -> list[Route]:
    async def user_list(call: Call) -> Response:
        rows = await call.ctx.read(users.summaries)
        return call.render("users.html", rows=rows)

    async def create(call: Call) -> Response:
        form = call.form
        name = form.text("name", "User name", max_len=users.MAX_NAME, required=True)
        password = form.text("password", "Password", max_len=MAX_PASSWORD, required=True)
        if password != form.text("again", "Password (again)", max_len=MAX_PASSWORD):
            raise ApiError("The two passwords differ.")
        user = await call.ctx.accounts.add_user(name, password, form.flag("admin"))
        return call.redirect(user_link(user.name), f"User {user.name} created.")

    async def one(call: Call) -> Response:
        name = call.query("name", max_len=users.MAX_NAME)
        now = call.ctx.clock()

        def job(conn: sqlite3.Connection) -> tuple[users.User | None, Any, Any, int]:
            user = users.by_name(conn, name)
            if user is None:
                return None, [], [], 0
            logins = conn.execute(
                "select at, ip, device_id, os, ok from api_login_log where user_id = ? "
                "order by id desc limit 20",
                (user.id,),
            ).fetchall()
            (n_tokens,) = conn.execute(
                "select count(*) from api_token where user_id = ? and expires_at > ?",
                (user.id, now),
            ).fetchone()
            return user, logins, sessions.of_user(conn, user.id, now), int(n_tokens)

        user, logins, active, n_tokens = await call.ctx.read(job)
        if user is None:
            raise ApiError(f"No user named {name!r}.", 404)
        return call.render("user.html", shown=user, logins=logins, active=active, n_tokens=n_tokens)

    def target(call: Call) -> str:
        return call.form.text("name", "User name", max_len=users.MAX_NAME, required=True)

    async def set_status(call: Call) -> Response:
        name = target(call)
        enable = call.form.text("status", "Status", max_len=1) == "1"
        if not enable and name.lower() == call.user.name.lower():
            raise ApiError("You cannot disable your own account.")
        status = users.ENABLED if enable else users.DISABLED
        user = await call.ctx.accounts.set_status(name, status)
        said = "enabled" if enable else "disabled; their sessions and logins ended"
        return call.redirect(user_link(user.name), f"User {user.name} {said}.")

    async def set_admin(call: Call) -> Response:
        name = target(call)
        admin = call.form.text("admin", "Admin", max_len=1) == "1"
        if not admin and name.lower() == call.user.name.lower():
            raise ApiError("You cannot take away your own admin rights.")
        user = await call.ctx.write(lambda c: users.set_admin(c, name, admin))
        if user is None:
            raise ApiError(f"No user named {name!r}.", 404)
        said = "is an admin now" if admin else "is a plain user now"
        return call.redirect(user_link(user.name), f"{user.name} {said}.")

    async def reset_password(call: Call) -> Response:
        name = target(call)
        password = call.form.text("password", "Password", max_len=MAX_PASSWORD, required=True)
        if password != call.form.text("again", "Password (again)", max_len=MAX_PASSWORD):
            raise ApiError("The two passwords differ.")
        user = await call.ctx.accounts.set_password(name, password)
        keep = call.who.session.digest if user.id == call.user.id else None

        def end(conn: sqlite3.Connection) -> None:
            sessions.end_all(conn, user.id, keep)
            tokens.revoke_user(conn, user.id)

        await call.ctx.write(end)
        return call.redirect(
            user_link(user.name),
            f"Password of {user.name} reset; their console sessions and RustDesk logins ended.",
        )

    return [
        Route("/users", console.page(user_list, admin=True), methods=["GET"]),
        Route("/users/create", console.page(create, admin=True), methods=["POST"]),
        Route("/user", console.page(one, admin=True), methods=["GET"]),
        Route("/user/status", console.page(set_status, admin=True), methods=["POST"]),
        Route("/user/admin", console.page(set_admin, admin=True), methods=["POST"]),
        Route("/user/password", console.page(reset_password, admin=True), methods=["POST"]),
    ]
