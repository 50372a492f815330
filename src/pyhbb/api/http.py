"""The client's HTTP conventions (docs/api.md §0.3), in one place.

- Errors are ``{"error": "..."}`` with status 200 or 4xx, never 5xx: a 5xx sends the
  client through the hbbs tunnel and makes it retry audits.
- A successful mutation is 200 with an **empty** body (``{}`` or ``null`` is an error
  toast reading "null").
- Paged lists always carry ``total`` and ``data``.
- Malformed JSON, wrong types and oversized bodies are 400 / 413 ``{"error"}``.
- When the database fails (locked, disk full, gone) the answer is 429 with Retry-After:
  the one non-5xx status the client retries by itself (audits are kept, not dropped)
  without a detour through the tunnel, and a user sees the error text.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pyhbb.api")

RETRY_AFTER = 10  # seconds; the client retries audits after 10 s, then 30 s
MAX_PAGE_SIZE = 1000


class ApiError(Exception):
    """An answer ``{"error": message}`` with ``status`` (200 or 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes", 413)


def error(message: str, status: int = 400, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def empty() -> Response:
    """200 with an empty body: how the client recognises a stored change."""
    return Response(b"", status_code=200)


def text(value: str) -> Response:
    return Response(value, status_code=200, media_type="text/plain")


def ok_json(value: object) -> Response:
    return JSONResponse(value)


def paged(total: int, data: list[dict[str, Any]]) -> Response:
    return JSONResponse({"total": total, "data": data})


# -- request bodies -----------------------------------------------------------------------


async def body_json(request: Request) -> object:
    """The parsed body; ``None`` for an empty body. 400 for anything that is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError("the request body is not valid JSON") from None


async def body_object(request: Request, *, allow_empty: bool = True) -> Fields:
    value = await body_json(request)
    if value is None and allow_empty:
        return Fields({})
    if not isinstance(value, dict):
        raise ApiError("the request body must be a JSON object")
    return Fields(value)


async def body_list_of_str(request: Request, what: str, max_items: int = 10_000) -> list[str]:
    value = await body_json(request)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(f"the request body must be a JSON array of {what}")
    if len(value) > max_items:
        raise ApiError(f"at most {max_items} {what} per request")
    return value


class Fields:
    """Typed access to a JSON object's members; a wrong type is a 400 naming the field."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __contains__(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def text(self, name: str, default: str = "", *, max_len: int = 1024) -> str:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ApiError(f"'{name}' must be a string")
        if len(value) > max_len:
            raise ApiError(f"'{name}' is longer than {max_len} characters")
        return value

    def required_text(self, name: str, *, max_len: int = 1024) -> str:
        value = self.text(name, max_len=max_len)
        if not value:
            raise ApiError(f"'{name}' is required")
        return value

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(f"'{name}' must be an integer")
        if not -(1 << 63) <= value < (1 << 63):
            raise ApiError(f"'{name}' is out of range")
        return value

    def number_text(self, name: str, *, max_len: int = 64) -> str:
        """A number the client may send as either (e.g. ``rdpPort``), kept as text."""
        value = self.data.get(name)
        if value is None:
            return ""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(name, max_len=max_len)

    def bool_text(self, name: str) -> str:
        """``forceAlwaysRelay``: the client stores "true"/"false" strings; accept bools."""
        value = self.data.get(name)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return self.text(name, max_len=8)

    def flag(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise ApiError(f"'{name}' must be true or false")
        return value

    def text_list(self, name: str, *, max_items: int = 1000, max_len: int = 256) -> list[str]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ApiError(f"'{name}' must be an array of strings")
        if len(value) > max_items or any(len(v) > max_len for v in value):
            raise ApiError(f"'{name}' has too many or too long entries")
        return value

    def object(self, name: str) -> Fields:
        value = self.data.get(name)
        if value is None:
            return Fields({})
        if not isinstance(value, dict):
            raise ApiError(f"'{name}' must be an object")
        return Fields(value)


# -- query strings ----------------------------------------------------------------------


def page(request: Request) -> tuple[int, int]:
    """(offset, limit) from ``current`` (1-based) and ``pageSize``; 400 when not numbers."""
    current = _query_int(request, "current", 1)
    size = _query_int(request, "pageSize", 100)
    if current < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(f"'current' must be ≥ 1 and 'pageSize' between 1 and {MAX_PAGE_SIZE}")
    return (current - 1) * size, size


def _query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(f"'{name}' must be a number") from None
    if abs(number) > 1 << 31:
        raise ApiError(f"'{name}' is out of range")
    return number


# -- where every failure becomes an answer -------------------------------------------------


def answer_exception(e: Exception, transient: tuple[type[Exception], ...]) -> Response:
    """The answer for an exception raised while handling a request (never a 5xx)."""
    if isinstance(e, ApiError):
        return error(e.message, e.status)
    retry = {"Retry-After": str(RETRY_AFTER)}
    if isinstance(e, transient):
        log.warning("database unavailable: %s", e)
        return error("the server's database is busy; try again shortly", 429, retry)
    log.exception("unexpected error while handling a request")
    return error("the server could not handle this request; its log says why", 429, retry)


class BodyCap:
    """ASGI middleware: a request body over ``max_body`` bytes is a 413 ``{"error"}``.

    A declared Content-Length over the cap is refused before anything is read; a body
    sent without one (chunked) raises :class:`BodyTooLarge` from ``receive`` once it
    passes the cap, which the endpoint turns into the same answer.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False  # the HTTP parser has already refused it
                if too_big:
                    await error(BodyTooLarge(self.max_body).message, 413)(scope, receive, send)
                    return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        await self.app(scope, capped_receive, send)
