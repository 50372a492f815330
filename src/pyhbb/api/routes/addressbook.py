"""Address books (docs/api.md #7-#18): handlers over :mod:`pyhbb.api.addressbook`."""

from __future__ import annotations

import sqlite3

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import addressbook as ab
from pyhbb.api.auth import Session
from pyhbb.api.context import ApiContext, user_endpoint
from pyhbb.api.http import (
    ApiError,
    body_list_of_str,
    body_object,
    empty,
    ok_json,
    page,
    paged,
)


def _guid(request: Request) -> str:
    guid = str(request.path_params.get("guid") or request.query_params.get("ab") or "")
    if not guid or len(guid) > 64:
        raise ApiError(ab.NOT_FOUND, 404)
    return guid


@user_endpoint
async def personal(request: Request, ctx: ApiContext, session: Session) -> Response:
    now = ctx.clock()
    book = await ctx.write(lambda c: ab.personal_book(c, session.user, now))
    return ok_json({"guid": book.guid})


@user_endpoint
async def settings(request: Request, ctx: ApiContext, session: Session) -> Response:
    return ok_json({"max_peer_one_ab": ctx.options.max_peer_one_ab})


@user_endpoint
async def shared_profiles(request: Request, ctx: ApiContext, session: Session) -> Response:
    offset, limit = page(request)
    total, data = await ctx.read(lambda c: ab.shared_profiles(c, session.user, offset, limit))
    return paged(total, data)


@user_endpoint
async def peers(request: Request, ctx: ApiContext, session: Session) -> Response:
    offset, limit = page(request)
    guid = _guid(request)

    def job(conn: sqlite3.Connection) -> tuple[int, list[dict[str, object]]]:
        book = ab.access(conn, guid, session.user, ab.READ)
        return ab.peers_page(conn, book, offset, limit)

    total, data = await ctx.read(job)
    return paged(total, data)


@user_endpoint
async def tags(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    return ok_json(await ctx.read(lambda c: ab.tags(c, ab.access(c, guid, session.user, ab.READ))))


@user_endpoint
async def peer_add(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    body = await body_object(request, allow_empty=False)
    peer_id = ab.entry_id(body)
    limit = ctx.options.max_peer_one_ab

    def job(conn: sqlite3.Connection) -> None:
        book = ab.access(conn, guid, session.user, ab.READ_WRITE)
        ab.add_peer(conn, book, peer_id, ab.entry_changes(body, book.personal), limit)

    await ctx.write(job)
    return empty()


@user_endpoint
async def peer_update(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    body = await body_object(request, allow_empty=False)
    peer_id = ab.entry_id(body)

    def job(conn: sqlite3.Connection) -> None:
        book = ab.access(conn, guid, session.user, ab.READ_WRITE)
        ab.update_peer(conn, book, peer_id, ab.entry_changes(body, book.personal))

    await ctx.write(job)
    return empty()


@user_endpoint
async def peer_delete(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    ids = await body_list_of_str(request, "peer ids")

    def job(conn: sqlite3.Connection) -> None:
        ab.delete_peers(conn, ab.access(conn, guid, session.user, ab.READ_WRITE), ids)

    await ctx.write(job)
    return empty()


@user_endpoint
async def tag_add(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    body = await body_object(request, allow_empty=False)
    name, color = body.required_text("name", max_len=ab.MAX_TAG), ab.tag_color(body)

    def job(conn: sqlite3.Connection) -> None:
        ab.add_tag(conn, ab.access(conn, guid, session.user, ab.READ_WRITE), name, color)

    await ctx.write(job)
    return empty()


@user_endpoint
async def tag_rename(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    body = await body_object(request, allow_empty=False)
    old = body.required_text("old", max_len=ab.MAX_TAG)
    new = body.required_text("new", max_len=ab.MAX_TAG)

    def job(conn: sqlite3.Connection) -> None:
        ab.rename_tag(conn, ab.access(conn, guid, session.user, ab.READ_WRITE), old, new)

    await ctx.write(job)
    return empty()


@user_endpoint
async def tag_update(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    body = await body_object(request, allow_empty=False)
    name, color = body.required_text("name", max_len=ab.MAX_TAG), ab.tag_color(body)

    def job(conn: sqlite3.Connection) -> None:
        ab.set_tag_color(conn, ab.access(conn, guid, session.user, ab.READ_WRITE), name, color)

    await ctx.write(job)
    return empty()


@user_endpoint
async def tag_delete(request: Request, ctx: ApiContext, session: Session) -> Response:
    guid = _guid(request)
    names = await body_list_of_str(request, "tag names")

    def job(conn: sqlite3.Connection) -> None:
        ab.delete_tags(conn, ab.access(conn, guid, session.user, ab.READ_WRITE), names)

    await ctx.write(job)
    return empty()


routes = [
    Route("/api/ab/personal", personal, methods=["POST"]),
    Route("/api/ab/settings", settings, methods=["POST"]),
    Route("/api/ab/shared/profiles", shared_profiles, methods=["POST"]),
    Route("/api/ab/peers", peers, methods=["POST"]),
    Route("/api/ab/tags/{guid}", tags, methods=["POST"]),
    Route("/api/ab/peer/add/{guid}", peer_add, methods=["POST"]),
    Route("/api/ab/peer/update/{guid}", peer_update, methods=["PUT"]),
    Route("/api/ab/peer/{guid}", peer_delete, methods=["DELETE"]),
    Route("/api/ab/tag/add/{guid}", tag_add, methods=["POST"]),
    Route("/api/ab/tag/rename/{guid}", tag_rename, methods=["PUT"]),
    Route("/api/ab/tag/update/{guid}", tag_update, methods=["PUT"]),
    Route("/api/ab/tag/{guid}", tag_delete, methods=["DELETE"]),
]
