"""Address books: the user's own book, shared books with their rules and entries.

Every check is :func:`pyhbb.api.addressbook.access`, the client API's own decision: a
personal book only for its owner (admins included: it may hold password hashes), a
shared book by its rules; admins and owners have full control of shared books.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import addressbook as ab
from pyhbb.api import users
from pyhbb.api.console.web import Call, Console
from pyhbb.api.http import ApiError, Fields

PAGE = 100
RULES = {"none": ab.NONE, "read": ab.READ, "rw": ab.READ_WRITE, "full": ab.FULL}
RULE_NAMES = {ab.READ: "read", ab.READ_WRITE: "read/write", ab.FULL: "full control"}
EVERYONE = "*"


def book_link(guid: str, **extra: Any) -> str:
    return "/book?" + urlencode({"guid": guid, **extra})


def routes(console: Console) -> list[Route]:
    async def book_list(call: Call) -> Response:
        viewer, now = call.user, call.ctx.clock()

        def job(conn: sqlite3.Connection) -> tuple[ab.Book, Any, list[str]]:
            personal = ab.personal_book(conn, viewer, now)
            if viewer.is_admin:
                shared = [
                    {"guid": b.guid, "name": b.name, "owner": b.owner_name, "note": b.note,
                     "rules": rules, "peers": n}
                    for b, rules, n in ab.list_shared(conn)
                ]  # fmt: skip
                return personal, shared, users.names(conn)
            _, profiles = ab.shared_profiles(conn, viewer, 0, 1000)
            return personal, profiles, []

        personal, shared, names = await call.ctx.write(job)
        return call.render(
            "books.html", personal=personal, shared=shared, names=names, rule_names=RULE_NAMES
        )

    async def book_page(call: Call) -> Response:
        guid = call.query("guid", max_len=64)
        page_text = call.query("page", "1", max_len=8)
        if not page_text.isdigit() or int(page_text) < 1:
            raise ApiError("'page' is a number from 1")
        page = int(page_text)
        viewer = call.user

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            book = ab.access(conn, guid, viewer, ab.READ)
            total, entries = ab.peers_page(conn, book, (page - 1) * PAGE, PAGE)
            rules: list[tuple[str, int]] = []
            if not book.personal:
                rules = [
                    (name or EVERYONE, int(rule))
                    for name, rule in conn.execute(
                        "select u.name, r.rule from api_ab_rule r left join api_user u "
                        "on u.id = r.user_id where r.ab_id = ? order by u.name",
                        (book.id,),
                    )
                ]
            can_write = _rule(conn, book, viewer) >= ab.READ_WRITE
            can_manage = not book.personal and _rule(conn, book, viewer) >= ab.FULL
            return {
                "book": book,
                "total": total,
                "entries": entries,
                "tags": ab.tags(conn, book),
                "rules": rules,
                "can_write": can_write,
                "can_manage": can_manage,
                "names": users.names(conn) if can_manage else [],
            }

        values = await call.ctx.read(job)
        pages = max(1, (values["total"] + PAGE - 1) // PAGE)
        return call.render("book.html", page=page, pages=pages, rule_names=RULE_NAMES, **values)

    async def create(call: Call) -> Response:
        form = call.form
        name = form.text("name", "Name", max_len=256, required=True).strip()
        note = form.text("note", "Note", max_len=1024)
        owner_name = form.text("owner", "Owner", max_len=users.MAX_NAME).strip()
        now = call.ctx.clock()

        def job(conn: sqlite3.Connection) -> ab.Book:
            owner = users.by_name(conn, owner_name) if owner_name else call.user
            if owner is None:
                raise ApiError(f"No user named {owner_name!r}.", 404)
            return ab.create_shared(conn, owner, name, note, now)

        book = await call.ctx.write(job)
        return call.redirect(book_link(book.guid), f"Shared address book {book.name} created.")

    def guid_of(call: Call) -> str:
        return call.form.text("guid", "Address book", max_len=64, required=True)

    async def delete(call: Call) -> Response:
        guid, viewer = guid_of(call), call.user

        def job(conn: sqlite3.Connection) -> str:
            book = ab.access(conn, guid, viewer, ab.READ)
            if book.personal or _rule(conn, book, viewer) < ab.FULL:
                raise ApiError("Only admins and the owner may delete a shared book.", 403)
            conn.execute("delete from api_ab where id = ?", (book.id,))
            return book.name

        name = await call.ctx.write(job)
        return call.redirect("/books", f"Address book {name} deleted.")

    async def set_rule(call: Call) -> Response:
        guid, viewer = guid_of(call), call.user
        who = call.form.text("user", "User", max_len=users.MAX_NAME, required=True).strip()
        rule = call.form.choice("rule", "Rule", RULES)

        def job(conn: sqlite3.Connection) -> None:
            book = ab.access(conn, guid, viewer, ab.READ)
            if book.personal or _rule(conn, book, viewer) < ab.FULL:
                raise ApiError("Only admins and the owner may share this book.", 403)
            user = None
            if who != EVERYONE:
                user = users.by_name(conn, who)
                if user is None:
                    raise ApiError(f"No user named {who!r}.", 404)
            ab.set_rule(conn, book, user, rule)

        await call.ctx.write(job)
        return call.redirect(book_link(guid), "Sharing changed.")

    async def add_entry(call: Call) -> Response:
        guid, viewer, form = guid_of(call), call.user, call.form
        peer_id = form.text("id", "Peer ID", max_len=ab.MAX_PEER_ID, required=True).strip()
        tags = [t.strip() for t in form.text("tags", "Tags", max_len=2048).split(",")]
        data: dict[str, Any] = {
            "alias": form.text("alias", "Alias", max_len=256),
            "note": form.text("note", "Note", max_len=1024),
            "tags": [t for t in tags if t],
        }
        password = form.text("password", "Password", max_len=1024)
        limit = call.ctx.options.max_peer_one_ab

        def job(conn: sqlite3.Connection) -> None:
            book = ab.access(conn, guid, viewer, ab.READ_WRITE)
            fields = dict(data)
            if password and not book.personal:
                fields["password"] = password
            ab.add_peer(conn, book, peer_id, ab.entry_changes(Fields(fields), book.personal), limit)

        await call.ctx.write(job)
        return call.redirect(book_link(guid), f"{peer_id} saved in the address book.")

    async def delete_entry(call: Call) -> Response:
        guid, viewer = guid_of(call), call.user
        peer_id = call.form.text("id", "Peer ID", max_len=ab.MAX_PEER_ID, required=True)

        def job(conn: sqlite3.Connection) -> None:
            ab.delete_peers(conn, ab.access(conn, guid, viewer, ab.READ_WRITE), [peer_id])

        await call.ctx.write(job)
        return call.redirect(book_link(guid), f"{peer_id} removed from the address book.")

    return [
        Route("/books", console.page(book_list), methods=["GET"]),
        Route("/book", console.page(book_page), methods=["GET"]),
        Route("/books/create", console.page(create, admin=True), methods=["POST"]),
        Route("/book/delete", console.page(delete), methods=["POST"]),
        Route("/book/rule", console.page(set_rule), methods=["POST"]),
        Route("/book/entry/add", console.page(add_entry), methods=["POST"]),
        Route("/book/entry/delete", console.page(delete_entry), methods=["POST"]),
    ]


def _rule(conn: sqlite3.Connection, book: ab.Book, viewer: users.User) -> int:
    rules = dict(
        conn.execute(
            "select coalesce(user_id, 0), rule from api_ab_rule where ab_id = ? and "
            "(user_id = ? or user_id is null)",
            (book.id, viewer.id),
        ).fetchall()
    )
    return ab.effective_rule(book, viewer, rules.get(viewer.id, ab.NONE), rules.get(0, ab.NONE))
