"""Rendering pages and the wrapper every console handler runs in.

The wrapper decides, before a handler runs, who is asking and whether they may:

* no valid session: a GET is sent to the sign-in page (coming back afterwards), a POST
  is refused with 403;
* a POST must come from our own pages: same origin, and the session's CSRF token in the
  form; otherwise 403 and nothing is read or changed;
* an admin page asked by a plain user: 403.

Whatever goes wrong afterwards becomes a page with a 4xx status and a sentence saying
what to do, never a 5xx: bad input is a 400 (or 404, 409), a busy database a 429 with
Retry-After, as in the client API.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pyhbb.api import tokens
from pyhbb.api.console import security, sessions
from pyhbb.api.console.forms import Form
from pyhbb.api.console.servers import ServerConsole
from pyhbb.api.console.sessions import BrowserSession, SessionPolicy
from pyhbb.api.context import ApiContext, context
from pyhbb.api.http import RETRY_AFTER, ApiError
from pyhbb.api.options import ApiOptions
from pyhbb.store.database import StoreError

log = logging.getLogger("pyhbb.api.console")

HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
MAX_FLASH = 300


def flash_cookie(text: str) -> str:
    """``text`` quoted for the flash cookie and cut to what :func:`security.cookie` reads
    back (a longer value would be dropped, and the message with it)."""
    text = text[:MAX_FLASH]
    while len(quote(text)) > security.MAX_COOKIE:  # at most MAX_FLASH short rounds
        text = text[:-1]
    return quote(text)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


@dataclass(frozen=True)
class Visitor:
    """The signed-in user of a request, with the session's CSRF token."""

    session: BrowserSession
    csrf: str

    @property
    def user(self) -> Any:
        return self.session.user


@dataclass
class Call:
    """One request to a console handler: who asks, the form (POST), how to answer."""

    request: Request
    ctx: ApiContext
    console: Console
    who: Visitor
    form: Form = field(default_factory=lambda: Form({}))

    @property
    def user(self) -> Any:
        return self.who.user

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        return self.console.render(self.request, template, self.who, status, **values)

    def redirect(self, url: str, flash: str = "") -> Response:
        return self.console.redirect(self.request, url, flash)

    def query(self, name: str, default: str = "", max_len: int = 256) -> str:
        value = self.request.query_params.get(name, default)
        if len(value) > max_len or "\x00" in value:
            raise ApiError(f"'{name}' is longer than {max_len} characters")
        return value


Handler = Callable[[Call], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class Console:
    """Templates, static files and the services pages use; one per API app."""

    def __init__(self, options: ApiOptions, policy: SessionPolicy | None = None) -> None:
        self.options = options
        self.policy = policy or SessionPolicy()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(time=fmt_time, ago=fmt_ago, duration=fmt_duration)
        self.static: dict[str, tuple[bytes, str]] = {}
        for path in sorted((HERE / "static").iterdir()):
            if path.suffix in STATIC_TYPES:
                self.static[path.name] = (path.read_bytes(), STATIC_TYPES[path.suffix])
        digest = hashlib.sha256(b"".join(body for body, _ in self.static.values()))
        self.static_version = digest.hexdigest()[:12]
        self.hbbs = ServerConsole("hbbs", options.hbbs_host, options.hbbs_port)
        self.hbbr = ServerConsole("hbbr", options.hbbr_host, options.hbbr_port)

    # -- answers ------------------------------------------------------------------------

    def _trusted(self, request: Request) -> bool:
        peer = request.client
        return peer is not None and context(request).is_trusted(peer.host)

    def secure(self, request: Request) -> bool:
        return security.is_https(request, self._trusted(request))

    def render(
        self,
        request: Request,
        template: str,
        who: Visitor | None,
        status: int = 200,
        **values: Any,
    ) -> Response:
        flash = security.cookie(request, security.FLASH_COOKIE)
        page = self.env.get_template(template).render(
            user=who.user if who else None,
            csrf=who.csrf if who else "",
            flash=unquote(flash)[:MAX_FLASH] if flash else "",
            static=f"/static/{{}}?v={self.static_version}",
            path=request.url.path,
            now=time.time(),
            **values,
        )
        response = HTMLResponse(page, status_code=status, headers=security.SECURITY_HEADERS)
        if flash:
            security.clear_cookie(response, security.FLASH_COOKIE, secure=self.secure(request))
        return response

    def redirect(self, request: Request, url: str, flash: str = "") -> Response:
        response = RedirectResponse(url, status_code=303)
        if flash:
            security.set_cookie(
                response,
                security.FLASH_COOKIE,
                flash_cookie(flash),
                secure=self.secure(request),
                max_age=60,
            )
        return response

    def error(self, request: Request, who: Visitor | None, status: int, message: str) -> Response:
        if not 400 <= status < 500:
            status = 400
        response = self.render(request, "error.html", who, status, message=message, code=status)
        if status == 429:
            response.headers["Retry-After"] = str(RETRY_AFTER)
        return response

    # -- sessions -----------------------------------------------------------------------

    async def visitor(self, request: Request, ctx: ApiContext) -> Visitor | None:
        token = security.cookie(request, security.SESSION_COOKIE)
        if token is None:
            return None
        digest = tokens.token_hash(token)
        now = ctx.clock()
        found = await ctx.read(lambda c: sessions.lookup(c, digest, now))
        if found is None:
            return None
        user, created_at, used_at = found
        if now - used_at >= self.policy.slide_every:
            expires = self.policy.expires_at(created_at, now)
            await ctx.write(lambda c: sessions.slide(c, digest, now, expires))
        session = BrowserSession(user, digest, token, created_at, used_at)
        return Visitor(session, security.csrf_token(token))

    # -- the wrapper ----------------------------------------------------------------------

    def page(self, handler: Handler, *, admin: bool = False) -> Endpoint:
        """Wrap a handler: sign-in, same origin and CSRF for POST, admin check, errors."""

        async def run(request: Request) -> Response:
            who: Visitor | None = None
            try:
                ctx = context(request)
                who = await self.visitor(request, ctx)
                form = Form({})
                if request.method == "POST":
                    if security.cross_origin(request, self._trusted(request)):
                        raise ApiError("This form was sent from another site: refused.", 403)
                    if who is None:
                        raise ApiError(
                            "You are signed out (the session ended or is not valid): "
                            "sign in again, then repeat what you were doing.",
                            403,
                        )
                    form = await Form.read(request)
                    if not security.same(who.csrf, form.get(security.CSRF_FIELD)):
                        raise ApiError(
                            "This form is out of date or did not come from this console "
                            "(missing or wrong security token): reload the page and try again.",
                            403,
                        )
                elif who is None:
                    target = request.url.path
                    if request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse("/login?" + urlencode({"next": target}), 303)
                if admin and not who.user.is_admin:
                    raise ApiError("This page is for administrators only.", 403)
                return await handler(Call(request, ctx, self, who, form))
            except ApiError as e:
                return self.error(request, who, e.status, e.message)
            except StoreError as e:
                log.warning("database unavailable: %s", e)
                return self.error(
                    request, who, 429, "The server's database is busy; try again shortly."
                )
            except Exception:
                log.exception("unexpected error in the web console")
                return self.error(
                    request, who, 429, "The server could not handle this page; its log says why."
                )

        run.__name__ = handler.__name__
        return run
