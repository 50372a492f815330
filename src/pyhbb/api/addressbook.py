"""Address books (docs/api.md #7-#18): who may see which book, and its peers and tags.

Every user has one personal book, created on first use; nobody else can ever read or
change it, admins included. Shared books are created by an admin and given rules per
user or for everyone: 1 read, 2 read/write, 3 full control; the effective rule is the
highest that applies, the owner and admins have full control. Reading needs rule 1,
changing peers or tags rule 2. A book one may not read answers exactly like a book
that does not exist.

Entries keep the peer ID as text (it may name a peer of another server). Personal books
keep the client's password ``hash``; shared books keep the ``password`` itself, which the
client needs in clear to connect (it is shown to every reader of the book). Renaming or
deleting a tag renames or removes it in the book's peers too, as the client's local
book does.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

from pyhbb.api.http import ApiError, Fields
from pyhbb.api.users import User

NONE, READ, READ_WRITE, FULL = 0, 1, 2, 3
RULE_NAMES = {"read": READ, "rw": READ_WRITE, "read-write": READ_WRITE, "full": FULL}
MAX_PEER_ID = 256
MAX_TAG = 256
NOT_FOUND = "address book not found"

# Client key -> column, for the string fields of an entry.
TEXT_FIELDS = {
    "alias": "alias",
    "note": "note",
    "username": "username",
    "hostname": "hostname",
    "platform": "platform",
    "rdpUsername": "rdp_username",
    "loginName": "login_name",
}


@dataclass(frozen=True)
class Book:
    id: int
    guid: str
    owner_id: int
    owner_name: str
    personal: bool
    name: str
    note: str


def effective_rule(book: Book, viewer: User, user_rule: int, everyone_rule: int) -> int:
    """The decision at the heart of sharing (see the module docstring)."""
    if book.personal:
        return FULL if book.owner_id == viewer.id else NONE
    if book.owner_id == viewer.id or viewer.is_admin:
        return FULL
    return max(user_rule, everyone_rule, NONE)


def entry_changes(fields: Fields, personal: bool) -> dict[str, Any]:
    """Columns to set from an entry the client sent (only the members present)."""
    changes: dict[str, Any] = {}
    for key, column in TEXT_FIELDS.items():
        if key in fields:
            changes[column] = fields.text(key, max_len=1024 if key == "note" else 256)
    if "tags" in fields:
        tags = fields.text_list("tags", max_len=MAX_TAG)
        changes["tags"] = json.dumps(list(dict.fromkeys(tags)), ensure_ascii=False)
    secret = "hash" if personal else "password"
    if secret in fields:
        changes[secret] = fields.text(secret, max_len=1024)
    if "forceAlwaysRelay" in fields:
        changes["force_always_relay"] = fields.bool_text("forceAlwaysRelay")
    if "rdpPort" in fields:
        changes["rdp_port"] = fields.number_text("rdpPort")
    if "same_server" in fields:
        same = fields.flag("same_server")
        changes["same_server"] = None if same is None else int(same)
    return changes


def entry_id(fields: Fields) -> str:
    return fields.required_text("id", max_len=MAX_PEER_ID)


def tag_color(fields: Fields) -> int:
    color = fields.integer("color")
    if color is None:
        raise ApiError("'color' is required")
    return color


# -- jobs -----------------------------------------------------------------------------------

_BOOK = (
    "select a.id, a.guid, a.owner_id, u.name, a.personal, a.name, a.note "
    "from api_ab a join api_user u on u.id = a.owner_id"
)


def _book(row: tuple[Any, ...]) -> Book:
    bid, guid, owner_id, owner_name, personal, name, note = row
    return Book(int(bid), guid, int(owner_id), owner_name, bool(personal), name, note)


def personal_book(conn: sqlite3.Connection, user: User, now: float) -> Book:
    row = conn.execute(f"{_BOOK} where a.owner_id = ? and a.personal = 1", (user.id,)).fetchone()
    if row is not None:
        return _book(row)
    guid = str(uuid.uuid4())
    conn.execute(
        "insert into api_ab (guid, owner_id, personal, name, created_at) values (?, ?, 1, ?, ?)",
        (guid, user.id, "My address book", now),
    )
    return personal_book(conn, user, now)


def access(conn: sqlite3.Connection, guid: str, viewer: User, need: int) -> Book:
    """The book if ``viewer`` has at least rule ``need`` on it; else a 404 / 403 ApiError."""
    row = conn.execute(f"{_BOOK} where a.guid = ?", (guid,)).fetchone()
    if row is None:
        raise ApiError(NOT_FOUND, 404)
    book = _book(row)
    rules = dict(
        conn.execute(
            "select coalesce(user_id, 0), rule from api_ab_rule where ab_id = ? and "
            "(user_id = ? or user_id is null)",
            (book.id, viewer.id),
        ).fetchall()
    )
    rule = effective_rule(book, viewer, rules.get(viewer.id, NONE), rules.get(0, NONE))
    if rule < READ:
        raise ApiError(NOT_FOUND, 404)
    if rule < need:
        raise ApiError("this address book is read-only for you", 403)
    return book


def shared_profiles(
    conn: sqlite3.Connection, viewer: User, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """The shared books ``viewer`` can read, with their effective rule."""
    sql = (
        "select a.id, a.guid, a.owner_id, u.name, a.personal, a.name, a.note, "
        "coalesce(max(r.rule), 0) from api_ab a join api_user u on u.id = a.owner_id "
        "left join api_ab_rule r on r.ab_id = a.id and (r.user_id = ? or r.user_id is null) "
        "where a.personal = 0 group by a.id"
    )
    args: tuple[Any, ...] = (viewer.id,)
    if not viewer.is_admin:
        sql += " having a.owner_id = ? or max(r.rule) >= 1"
        args += (viewer.id,)
    (total,) = conn.execute(f"select count(*) from ({sql})", args).fetchone()
    rows = conn.execute(f"{sql} order by a.name, a.id limit ? offset ?", (*args, limit, offset))
    profiles = []
    for row in rows.fetchall():
        book = _book(row[:7])
        rule = effective_rule(book, viewer, int(row[7]), NONE)
        profiles.append(
            {
                "guid": book.guid,
                "name": book.name,
                "owner": book.owner_name,
                "note": book.note,
                "rule": rule,
                "info": {},
            }
        )
    return int(total), profiles


_PEER_COLUMNS = (
    "e.peer_id, e.alias, e.tags, e.note, e.hash, e.password, e.username, e.hostname, "
    "e.platform, e.force_always_relay, e.rdp_port, e.rdp_username, e.login_name, "
    "e.same_server, coalesce(g.name, '')"
)


def peers_page(
    conn: sqlite3.Connection, book: Book, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    (total,) = conn.execute(
        "select count(*) from api_ab_peer where ab_id = ?", (book.id,)
    ).fetchone()
    rows = conn.execute(
        f"select {_PEER_COLUMNS} from api_ab_peer e left join peer p on p.id = e.peer_id "
        "left join api_device d on d.guid = p.guid "
        "left join api_device_group g on g.id = d.group_id "
        "where e.ab_id = ? order by e.id limit ? offset ?",
        (book.id, limit, offset),
    ).fetchall()
    return int(total), [_peer_payload(book, r) for r in rows]


def _peer_payload(book: Book, r: tuple[Any, ...]) -> dict[str, Any]:
    peer: dict[str, Any] = {
        "id": r[0],
        "alias": r[1],
        "tags": _tags(r[2]),
        "note": r[3],
        "username": r[6],
        "hostname": r[7],
        "platform": r[8],
        "forceAlwaysRelay": r[9] or "false",
        "rdpPort": r[10],
        "rdpUsername": r[11],
        "loginName": r[12],
        "device_group_name": r[14],
    }
    if book.personal:
        peer["hash"] = r[4]
    else:
        peer["password"] = r[5]
    if r[13] is not None:
        peer["same_server"] = bool(r[13])
    return peer


def _tags(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [t for t in value if isinstance(t, str)] if isinstance(value, list) else []


def add_peer(
    conn: sqlite3.Connection, book: Book, peer_id: str, changes: dict[str, Any], max_peers: int
) -> None:
    exists = conn.execute(
        "select 1 from api_ab_peer where ab_id = ? and peer_id = ?", (book.id, peer_id)
    ).fetchone()
    if exists is None and max_peers > 0:
        (count,) = conn.execute(
            "select count(*) from api_ab_peer where ab_id = ?", (book.id,)
        ).fetchone()
        if count >= max_peers:
            raise ApiError(f"this address book is full ({max_peers} peers at most)", 403)
    if exists is None:
        conn.execute("insert into api_ab_peer (ab_id, peer_id) values (?, ?)", (book.id, peer_id))
    _set(conn, book, peer_id, changes)


def update_peer(
    conn: sqlite3.Connection, book: Book, peer_id: str, changes: dict[str, Any]
) -> None:
    exists = conn.execute(
        "select 1 from api_ab_peer where ab_id = ? and peer_id = ?", (book.id, peer_id)
    ).fetchone()
    if exists is None:
        raise ApiError(f"peer {peer_id!r} is not in this address book", 404)
    _set(conn, book, peer_id, changes)


def _set(conn: sqlite3.Connection, book: Book, peer_id: str, changes: dict[str, Any]) -> None:
    if not changes:
        return
    # Column names come from the fixed tables above, never from the request.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    conn.execute(
        f"update api_ab_peer set {assignments} where ab_id = ? and peer_id = ?",
        (*changes.values(), book.id, peer_id),
    )


def delete_peers(conn: sqlite3.Connection, book: Book, peer_ids: list[str]) -> None:
    conn.executemany(
        "delete from api_ab_peer where ab_id = ? and peer_id = ?",
        [(book.id, peer_id) for peer_id in peer_ids],
    )


def tags(conn: sqlite3.Connection, book: Book) -> list[dict[str, Any]]:
    return [
        {"name": name, "color": color}
        for name, color in conn.execute(
            "select name, color from api_ab_tag where ab_id = ? order by name", (book.id,)
        )
    ]


def add_tag(conn: sqlite3.Connection, book: Book, name: str, color: int) -> None:
    conn.execute(
        "insert into api_ab_tag (ab_id, name, color) values (?, ?, ?) "
        "on conflict (ab_id, name) do update set color = excluded.color",
        (book.id, name, color),
    )


def set_tag_color(conn: sqlite3.Connection, book: Book, name: str, color: int) -> None:
    cur = conn.execute(
        "update api_ab_tag set color = ? where ab_id = ? and name = ?", (color, book.id, name)
    )
    if cur.rowcount == 0:
        raise ApiError(f"tag {name!r} is not in this address book", 404)


def rename_tag(conn: sqlite3.Connection, book: Book, old: str, new: str) -> None:
    row = conn.execute(
        "select color from api_ab_tag where ab_id = ? and name = ?", (book.id, old)
    ).fetchone()
    if row is None:
        raise ApiError(f"tag {old!r} is not in this address book", 404)
    if old == new:
        return
    conn.execute("delete from api_ab_tag where ab_id = ? and name = ?", (book.id, old))
    conn.execute(
        "insert into api_ab_tag (ab_id, name, color) values (?, ?, ?) "
        "on conflict (ab_id, name) do nothing",  # renaming onto an existing tag merges them
        (book.id, new, row[0]),
    )
    _retag(conn, book, {old: new})


def delete_tags(conn: sqlite3.Connection, book: Book, names: list[str]) -> None:
    conn.executemany(
        "delete from api_ab_tag where ab_id = ? and name = ?", [(book.id, n) for n in names]
    )
    _retag(conn, book, dict.fromkeys(names))


def _retag(conn: sqlite3.Connection, book: Book, mapping: dict[str, str | None]) -> None:
    """Apply a rename (old -> new) or removal (old -> None) to every peer's tags."""
    rows = conn.execute(
        "select id, tags from api_ab_peer where ab_id = ? and tags != '[]'", (book.id,)
    ).fetchall()
    for row_id, text in rows:
        before = _tags(text)
        after: list[str] = []
        for tag in before:
            renamed = mapping.get(tag, tag)
            if renamed is not None and renamed not in after:
                after.append(renamed)
        if after != before:
            conn.execute(
                "update api_ab_peer set tags = ? where id = ?",
                (json.dumps(after, ensure_ascii=False), row_id),
            )


# -- administration (CLI now, console later) ------------------------------------------------


def create_shared(conn: sqlite3.Connection, owner: User, name: str, note: str, now: float) -> Book:
    guid = str(uuid.uuid4())
    conn.execute(
        "insert into api_ab (guid, owner_id, personal, name, note, created_at) "
        "values (?, ?, 0, ?, ?, ?)",
        (guid, owner.id, name, note, now),
    )
    row = conn.execute(f"{_BOOK} where a.guid = ?", (guid,)).fetchone()
    return _book(row)


def shared_named(conn: sqlite3.Connection, name_or_guid: str) -> list[Book]:
    """Shared books with this name, or the one with this guid."""
    rows = conn.execute(
        f"{_BOOK} where a.personal = 0 and (a.name = ? or a.guid = ?)",
        (name_or_guid, name_or_guid),
    ).fetchall()
    return [_book(r) for r in rows]


def set_rule(conn: sqlite3.Connection, book: Book, user: User | None, rule: int) -> None:
    """Give ``user`` (None: everyone) ``rule`` on a shared book; NONE removes the rule."""
    if book.personal:
        raise ApiError("a personal address book cannot be shared", 400)
    if user is None:
        conn.execute("delete from api_ab_rule where ab_id = ? and user_id is null", (book.id,))
    else:
        conn.execute("delete from api_ab_rule where ab_id = ? and user_id = ?", (book.id, user.id))
    if rule != NONE:
        conn.execute(
            "insert into api_ab_rule (ab_id, user_id, rule) values (?, ?, ?)",
            (book.id, None if user is None else user.id, rule),
        )


def list_shared(conn: sqlite3.Connection) -> list[tuple[Book, list[tuple[str, int]], int]]:
    """Every shared book with its rules ([(user name or '*', rule)]) and peer count."""
    books = [_book(r) for r in conn.execute(f"{_BOOK} where a.personal = 0 order by a.name")]
    result = []
    for book in books:
        rules = [
            (name or "*", int(rule))
            for name, rule in conn.execute(
                "select u.name, r.rule from api_ab_rule r left join api_user u "
                "on u.id = r.user_id where r.ab_id = ? order by u.name",
                (book.id,),
            )
        ]
        (count,) = conn.execute(
            "select count(*) from api_ab_peer where ab_id = ?", (book.id,)
        ).fetchone()
        result.append((book, rules, int(count)))
    return result
