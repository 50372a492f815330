"""Login, logout, current user, login options (docs/api.md #1-#4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api.auth import Login, Session
from pyhbb.api.context import ApiContext, endpoint, user_endpoint
from pyhbb.api.devices import DeviceProof
from pyhbb.api.http import ApiError, body_object, empty, ok_json
from pyhbb.api.passwords import MAX_PASSWORD


@endpoint
async def login(request: Request, ctx: ApiContext) -> Response:
    body = await body_object(request, allow_empty=False)
    kind = body.text("type", "account", max_len=32)
    if kind != "account":
        # Email codes and 2FA are not offered (login-options lists nothing else).
        raise ApiError(f"login type {kind!r} is not supported by this server")
    attempt = Login(
        name=body.required_text("username", max_len=256),
        password=body.required_text("password", max_len=MAX_PASSWORD),
        device=DeviceProof.from_fields(body),
        os=body.object("deviceInfo").text("os", max_len=256),
    )
    token, user = await ctx.accounts.login(attempt, ctx.client_ip(request))
    return ok_json({"type": "access_token", "access_token": token, "user": user.payload()})


@user_endpoint
async def logout(request: Request, ctx: ApiContext, session: Session) -> Response:
    await ctx.accounts.logout(session)
    return empty()


@user_endpoint
async def current_user(request: Request, ctx: ApiContext, session: Session) -> Response:
    await body_object(request)  # {id, uuid}: validated, nothing to do with them
    return ok_json(session.user.payload())


@endpoint
async def login_options(request: Request, ctx: ApiContext) -> Response:
    return ok_json([])  # password login only: no OIDC provider to list


routes = [
    Route("/api/login", login, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/currentUser", current_user, methods=["POST"]),
    Route("/api/login-options", login_options, methods=["GET"]),
]
