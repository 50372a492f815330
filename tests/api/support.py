"""Run ``pyhbb api`` in-process and talk to it as the RustDesk client does."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from argon2 import PasswordHasher

from pyhbb.api.context import ApiContext
from pyhbb.api.options import ApiOptions
from pyhbb.api.passwords import Passwords
from pyhbb.api.server import ApiServer, uvicorn_config
from pyhbb.api.users import User
from pyhbb.net.sockets import tcp_listener

# Argon2id all the same, with small costs so that a test can log in many times.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclasses.dataclass
class RunningApi:
    url: str
    options: ApiOptions
    server: uvicorn.Server

    @property
    def ctx(self) -> ApiContext:
        app: Any = self.server.config.loaded_app
        while not hasattr(app, "state"):
            app = app.app  # through uvicorn's and our middleware wrappers
        ctx: ApiContext = app.state.api
        return ctx

    async def add_user(self, name: str, password: str = "secret", admin: bool = False) -> User:
        return await self.ctx.accounts.add_user(name, password, admin)

    def client(self, device_id: str = "", uuid: bytes | None = None) -> RdApiClient:
        return RdApiClient(self.url, device_id or f"1{os.urandom(4).hex()}", uuid)


@contextlib.asynccontextmanager
async def running_api(workdir: Path, **overrides: Any) -> AsyncIterator[RunningApi]:
    """Serve the API from ``workdir`` on a free loopback port; stop it cleanly after."""
    sock = tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    fields: dict[str, Any] = {"port": port, "bind": "127.0.0.1", "workdir": workdir}
    fields.setdefault("hbbs_port", 1)  # no hbbs unless a test gives one: online unknown
    fields.update(overrides)
    options = ApiOptions(**fields)
    server = ApiServer(uvicorn_config(options, Passwords(FAST_HASHER)), signals=False)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the API server stopped during start-up")
        await asyncio.sleep(0.01)
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", options, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class RdApiClient:
    """What the RustDesk 1.4.x client sends: JSON bodies, ``Bearer`` tokens, a new TCP
    connection per request, pages of 100 read while ``current * pageSize < total``."""

    def __init__(self, url: str, device_id: str, uuid: bytes | None = None) -> None:
        self.url = url
        self.device_id = device_id
        self.uuid = uuid or os.urandom(16)
        self.token = ""
        # No kept-alive connections: a new TCP connection per request, as the client.
        self._http = httpx.AsyncClient(
            timeout=12, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        )

    @property
    def uuid_b64(self) -> str:
        return base64.b64encode(self.uuid).decode()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        all_headers = {"Content-Type": "application/json"}
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        return await self._http.request(
            method,
            self.url + path,
            json=body if content is None else None,
            content=content,
            headers=all_headers,
        )

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """A call the client expects to succeed: the parsed JSON, or raises ApiError."""
        resp = await self.request(method, path, body)
        parsed = resp.json() if resp.content else None
        if resp.status_code != 200 or (isinstance(parsed, dict) and "error" in parsed):
            raise ApiError(resp.status_code, parsed)
        return parsed

    async def mutate(self, method: str, path: str, body: Any) -> None:
        """An address-book change: only 200 with an empty body counts as saved."""
        resp = await self.request(method, path, body)
        if resp.status_code != 200 or resp.content != b"":
            raise ApiError(resp.status_code, resp.json() if resp.content else None)

    async def login(self, name: str, password: str = "secret") -> dict[str, Any]:
        body = {
            "username": name,
            "password": password,
            "id": self.device_id,
            "uuid": self.uuid_b64,
            "autoLogin": True,
            "type": "account",
            "deviceInfo": {"os": "linux", "type": "client", "name": "test-host"},
        }
        answer = await self.call("POST", "/api/login", body)
        assert answer["type"] == "access_token"
        self.token = answer["access_token"]
        return dict(answer)

    async def pages(self, method: str, path: str, extra: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        current = 1
        while True:
            answer = await self.call(method, f"{path}?current={current}&pageSize=100{extra}")
            assert "total" in answer and "data" in answer, answer
            items += answer["data"]
            if current * 100 >= answer["total"]:
                return items
            current += 1

    async def pull_address_books(self) -> dict[str, Any]:
        """The pull after login: currentUser, personal, settings, profiles, peers, tags."""
        ident = {"id": self.device_id, "uuid": self.uuid_b64}
        user = await self.call("POST", "/api/currentUser", ident)
        personal = (await self.call("POST", "/api/ab/personal"))["guid"]
        settings = await self.call("POST", "/api/ab/settings")
        profiles = await self.pages("POST", "/api/ab/shared/profiles")
        books: dict[str, Any] = {}
        for guid in [personal, *(p["guid"] for p in profiles)]:
            books[guid] = {
                "peers": await self.pages("POST", "/api/ab/peers", f"&ab={guid}"),
                "tags": await self.call("POST", f"/api/ab/tags/{guid}"),
            }
        return {
            "user": user,
            "personal": personal,
            "settings": settings,
            "profiles": profiles,
            "books": books,
        }

    async def device_call(self, path: str, extra: dict[str, Any] | None = None) -> httpx.Response:
        body = {"id": self.device_id, "uuid": self.uuid_b64, **(extra or {})}
        return await self.request("POST", path, body, auth=False)
