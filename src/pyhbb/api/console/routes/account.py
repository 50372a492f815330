"""Signing in and out, the user's own password and sessions."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pyhbb.api import tokens
from pyhbb.api.console import security, sessions
from pyhbb.api.console.forms import Form
from pyhbb.api.console.web import Call, Console
from pyhbb.api.context import context
from pyhbb.api.http import ApiError
from pyhbb.api.passwords import MAX_PASSWORD
from pyhbb.store.database import StoreError

SIGN_IN_WHERE = "web console"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/devices"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/devices"
    return target[:1024]


def routes(console: Console) -> list[Route]:
    def login_page(
        request: Request, status: int = 200, message: str = "", name: str = "", target: str = ""
    ) -> Response:
        nonce = security.new_login_nonce()
        response = console.render(
            request,
            "login.html",
            None,
            status,
            nonce=nonce,
            next=safe_next(target or request.query_params.get("next")),
            message=message,
            name=name,
        )
        security.set_cookie(
            response, security.LOGIN_COOKIE, nonce, secure=console.secure(request), strict=True
        )
        return response

    async def show_login(request: Request) -> Response:
        try:
            if await console.visitor(request, context(request)) is not None:
                return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        except StoreError:
            pass  # the form is still worth showing
        return login_page(request)

    async def do_login(request: Request) -> Response:
        ctx = context(request)
        name = target = ""
        try:
            trusted = ctx.is_trusted(request.client.host) if request.client else False
            if security.cross_origin(request, trusted):
                raise ApiError("This form was sent from another site: refused.", 403)
            form = await Form.read(request)
            target = form.text("next", "Next page", max_len=1024)
            name = form.text("name", "User name", max_len=256)
            nonce = security.cookie(request, security.LOGIN_COOKIE)
            if nonce is None or not security.same(nonce, form.get("nonce")):
                raise ApiError(
                    "The sign-in form expired or cookies are blocked: please try again "
                    "(this console needs cookies).",
                    403,
                )
            password = form.text("password", "Password", max_len=MAX_PASSWORD, required=True)
            if not name:
                raise ApiError("User name is required")
            agent = request.headers.get("user-agent", "")[: sessions.MAX_AGENT]
            ip = ctx.client_ip(request)
            user = await ctx.accounts.sign_in(name, password, ip, SIGN_IN_WHERE)
            token = sessions.new_token()
            digest = tokens.token_hash(token)
            now = ctx.clock()
            expires = console.policy.expires_at(now, now)
            await ctx.write(lambda c: sessions.create(c, user.id, digest, now, expires, ip, agent))
        except ApiError as e:
            return login_page(request, e.status, e.message, name, target)
        except StoreError:
            return login_page(request, 429, "The server's database is busy; try again shortly.")
        response = RedirectResponse(safe_next(target), 303)
        secure = console.secure(request)
        security.set_cookie(
            response,
            security.SESSION_COOKIE,
            token,
            secure=secure,
            max_age=int(console.policy.lifetime),
        )
        security.clear_cookie(response, security.LOGIN_COOKIE, secure=secure)
        return response

    async def logout(call: Call) -> Response:
        digest = call.who.session.digest
        await call.ctx.write(lambda c: sessions.end(c, digest))
        response = call.redirect("/login", "You are signed out.")
        security.clear_cookie(
            response, security.SESSION_COOKIE, secure=call.console.secure(call.request)
        )
        return response

    async def home(call: Call) -> Response:
        return call.redirect("/devices")

    async def account(call: Call) -> Response:
        user, now = call.user, call.ctx.clock()

        def job(conn: sqlite3.Connection) -> tuple[list[sessions.SessionInfo], list[Any]]:
            active = sessions.of_user(conn, user.id, now)
            logins = conn.execute(
                "select at, ip, device_id, os, ok from api_login_log where user_id = ? "
                "order by id desc limit 20",
                (user.id,),
            ).fetchall()
            return active, logins

        active, logins = await call.ctx.read(job)
        return call.render(
            "account.html",
            active=active,
            current=call.who.session.digest,
            logins=logins,
        )

    async def change_password(call: Call) -> Response:
        form = call.form
        current = form.text("current", "Current password", max_len=MAX_PASSWORD, required=True)
        new = form.text("new", "New password", max_len=MAX_PASSWORD, required=True)
        if new != form.text("again", "New password (again)", max_len=MAX_PASSWORD):
            raise ApiError("The two new passwords differ.")
        try:
            await call.ctx.accounts.change_password(
                call.user, current, new, call.ctx.client_ip(call.request)
            )
        except ApiError as e:
            if e.status == 401:
                raise ApiError("The current password is wrong.") from None
            raise
        keep = call.who.session.digest
        ended = await call.ctx.write(lambda c: sessions.end_all(c, call.user.id, keep))
        return call.redirect(
            "/account", f"Password changed; {ended} other console session(s) ended."
        )

    async def end_others(call: Call) -> Response:
        keep = call.who.session.digest
        ended = await call.ctx.write(lambda c: sessions.end_all(c, call.user.id, keep))
        return call.redirect("/account", f"{ended} other console session(s) ended.")

    return [
        Route("/", console.page(home), methods=["GET"]),
        Route("/login", show_login, methods=["GET"]),
        Route("/login", do_login, methods=["POST"]),
        Route("/logout", console.page(logout), methods=["POST"]),
        Route("/account", console.page(account), methods=["GET"]),
        Route("/account/password", console.page(change_password), methods=["POST"]),
        Route("/account/sessions", console.page(end_others), methods=["POST"]),
    ]
