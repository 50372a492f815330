"""What every handler reaches: the services of one running API, and the handler wrappers.

Handlers are thin: parse with :mod:`pyhbb.api.http`, decide in the domain modules, run
SQL jobs through the one :class:`SqliteDatabase`. The wrappers turn every exception into
an answer the client understands (never a 5xx) and check the token of user routes.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from pyhbb.api import jobs
from pyhbb.api.auth import Accounts, Session
from pyhbb.api.heartbeats import HeartbeatBuffer
from pyhbb.api.http import answer_exception
from pyhbb.api.options import ApiOptions
from pyhbb.api.presence import HbbsPresence
from pyhbb.net.forwarded import client_addr, in_networks
from pyhbb.store.database import SqliteDatabase, StoreError
from pyhbb.wire.addr_mangle import try_into_v4

TRANSIENT = (StoreError,)
T = TypeVar("T")


@dataclass
class ApiContext:
    options: ApiOptions
    db: SqliteDatabase
    accounts: Accounts
    heartbeats: HeartbeatBuffer
    presence: HbbsPresence
    clock: Callable[[], float]
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Events for the metrics: (event, result) → count, from fixed sets of words."""

    async def read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await jobs.read(self.db, job)

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await jobs.write(self.db, job)

    def client_ip(self, request: Request) -> str:
        """The client's IP; proxy headers only from ``--trusted-proxies`` (hbbs's tunnel)."""
        peer = request.client
        if peer is None:
            return ""
        ip = try_into_v4(peer.host)
        if not self._trusted(ip):  # most requests: no header to look at
            return ip
        forwarded = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in request.scope["headers"]
            if name in (b"x-real-ip", b"x-forwarded-for")
        }
        if not forwarded:
            return ip
        return client_addr((ip, peer.port), forwarded, self.options.trusted_proxies)[0]

    def is_trusted(self, ip: str) -> bool:
        """Whether ``ip`` is one of ``--trusted-proxies`` (whose proxy headers count)."""
        return bool(self._trusted(try_into_v4(ip)))

    def __post_init__(self) -> None:
        # Parsing the address for every request costs more than the rest of a heartbeat;
        # the same few addresses (proxies, NAT gateways) come again and again.
        nets = self.options.trusted_proxies
        self._trusted = functools.lru_cache(maxsize=4096)(lambda ip: in_networks(ip, nets))


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    return ctx


Handler = Callable[[Request, ApiContext], Awaitable[Response]]
UserHandler = Callable[[Request, ApiContext, Session], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route without credentials (device side, login)."""

    @wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request, context(request))
        except Exception as e:
            return answer_exception(e, TRANSIENT)

    return run


def user_endpoint(handler: UserHandler) -> Callable[[Request], Awaitable[Response]]:
    """A route for a logged-in user: ``Authorization: Bearer`` checked first (401)."""

    @wraps(handler)
    async def run(request: Request) -> Response:
        try:
            ctx = context(request)
            session = await ctx.accounts.authenticate(request.headers.get("authorization"))
            return await handler(request, ctx, session)
        except Exception as e:
            return answer_exception(e, TRANSIENT)

    return run
