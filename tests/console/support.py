"""A browser-like HTTP client for the console (cookies, forms, CSRF tokens from pages)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx

_HIDDEN = re.compile(r'<input type="hidden" name="(csrf|nonce)" value="([^"]*)">')


def hidden(html: str, name: str) -> str:
    for field, value in _HIDDEN.findall(html):
        if field == name:
            return unescape(value)
    raise AssertionError(f"no hidden field {name!r} in the page")


class Browser:
    """Keeps cookies like a browser; posts forms the way the console's pages do."""

    def __init__(self, url: str) -> None:
        self.url = url
        host = url.split("//", 1)[1]
        self.origin = url
        self.http = httpx.AsyncClient(
            base_url=url,
            trust_env=False,
            timeout=15,
            headers={"Host": host, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        )
        self.csrf = ""

    async def close(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        resp = await self.http.get(path, **kw)
        if 'name="csrf"' in resp.text:
            self.csrf = hidden(resp.text, "csrf")
        return resp

    async def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, origin: str | None = None
    ) -> httpx.Response:
        fields = dict(data)
        if csrf:
            fields.setdefault("csrf", self.csrf)
        return await self.http.post(path, data=fields, headers={"Origin": origin or self.origin})

    async def sign_in(self, name: str, password: str = "secret") -> httpx.Response:
        page = await self.http.get("/login")
        nonce = hidden(page.text, "nonce")
        resp = await self.http.post(
            "/login",
            data={"name": name, "password": password, "nonce": nonce, "next": "/devices"},
            headers={"Origin": self.origin},
        )
        if resp.status_code == 303:
            await self.get("/devices")
        return resp
