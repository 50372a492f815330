"""Administration from the shell: ``pyhbb user``, ``pyhbb ab`` and ``pyhbb group``.

They run in the working directory like hbbs (same DB_URL, ``.env`` and environment) and
go through the same repositories as the API, so a change is seen by the running API at
its next request: a disabled user's tokens stop working at once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pyhbb.api import addressbook as ab
from pyhbb.api import devices, jobs, users
from pyhbb.api.auth import Accounts
from pyhbb.api.http import ApiError
from pyhbb.api.login_limits import LoginLimiter
from pyhbb.api.options import database_path, parse_api_options
from pyhbb.api.passwords import Passwords
from pyhbb.api.schema import MIGRATIONS
from pyhbb.api.tokens import TokenPolicy
from pyhbb.config.sources import ConfigError
from pyhbb.store.database import Conflict, SqliteDatabase, StoreError

RULES = {"none": ab.NONE, **ab.RULE_NAMES}


def build_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``user``, ``ab`` and ``group`` to the ``pyhbb`` command."""
    user = sub.add_parser(
        "user",
        help="manage API accounts (run in the server's working directory)",
        description="Manage the accounts RustDesk clients log in with. The password is read "
        "as one line from standard input when it is not a terminal, else asked twice.",
    )
    u = user.add_subparsers(dest="action", required=True)
    add = u.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="sees every user and device")
    u.add_parser("passwd", help="set a new password").add_argument("name")
    u.add_parser("disable", help="refuse logins; the user's tokens stop at once").add_argument(
        "name"
    )
    u.add_parser("enable", help="allow logins again").add_argument("name")
    u.add_parser("list", help="list accounts")

    book = sub.add_parser(
        "ab",
        help="manage shared address books",
        description="Shared address books and who may use them. Rules: read, rw "
        "(read/write: add, change and delete peers and tags), full, none (remove).",
    )
    b = book.add_subparsers(dest="action", required=True)
    create = b.add_parser("create", help="create a shared address book")
    create.add_argument("name")
    create.add_argument("--owner", required=True, help="user who owns it (full control)")
    create.add_argument("--note", default="")
    share = b.add_parser("share", help="give a user (or everyone) a rule on a book")
    share.add_argument("book", help="name or guid of the shared book")
    who = share.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--everyone", action="store_true")
    share.add_argument("--rule", required=True, choices=sorted(RULES))
    b.add_parser("list", help="list shared books and their rules")

    group = sub.add_parser("group", help="manage device groups (labels for the device list)")
    g = group.add_subparsers(dest="action", required=True)
    g.add_parser("add", help="create a device group").add_argument("name")
    assign = g.add_parser("assign", help="put a device (by its ID) in a group")
    assign.add_argument("group", help="group name, or '-' for no group")
    assign.add_argument("device_id")
    g.add_parser("list", help="list device groups")


def read_password(prompt: str = "Password: ") -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != first:
        raise ApiError("the two passwords differ")
    return first


def main(args: argparse.Namespace) -> int:
    try:
        options = parse_api_options([], workdir=Path.cwd())
    except ConfigError as e:
        print(f"pyhbb: {e}", file=sys.stderr)
        return 2
    command = COMMANDS[(args.command, args.action)]
    try:
        password = read_password() if (args.command, args.action) in NEEDS_PASSWORD else ""
        return asyncio.run(_run(options.db_url, options.workdir, command, args, password))
    except ApiError as e:
        print(f"pyhbb {args.command} {args.action}: {e.message}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"pyhbb {args.command} {args.action}: database error: {e}", file=sys.stderr)
        return 1


Command = Callable[[SqliteDatabase, argparse.Namespace, str], Awaitable[int]]


async def _run(
    db_url: str, workdir: Path, command: Command, args: argparse.Namespace, password: str
) -> int:
    db = await SqliteDatabase.open(database_path(db_url, workdir), migrations=MIGRATIONS)
    try:
        return await command(db, args, password)
    finally:
        await db.close()


def _accounts(db: SqliteDatabase) -> Accounts:
    return Accounts(db, Passwords(), LoginLimiter(), TokenPolicy(), time.time)


async def user_add(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    user = await _accounts(db).add_user(args.name, password, args.admin)
    print(f"created {'admin ' if user.is_admin else ''}user {user.name}")
    return 0


async def user_passwd(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    user = await _accounts(db).set_password(args.name, password)
    print(f"password of {user.name} changed")
    return 0


async def user_disable(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    user = await _accounts(db).set_status(args.name, users.DISABLED)
    print(f"user {user.name} disabled; its logins ended")
    return 0


async def user_enable(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    user = await _accounts(db).set_status(args.name, users.ENABLED)
    print(f"user {user.name} enabled")
    return 0


async def user_list(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    _total, rows = await jobs.read(db, lambda c: users.page(c, 0, 1 << 30, False))
    for user in rows:
        flags = ["admin" if user.is_admin else "user"]
        if user.status != users.ENABLED:
            flags.append("disabled")
        print(f"{user.name}\t{','.join(flags)}")
    return 0


async def _user(db: SqliteDatabase, name: str) -> users.User:
    user = await jobs.read(db, lambda c: users.by_name(c, name))
    if user is None:
        raise ApiError(f"no user named {name!r}")
    return user


async def ab_create(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    owner = await _user(db, args.owner)
    now = time.time()
    book = await jobs.write(db, lambda c: ab.create_shared(c, owner, args.name, args.note, now))
    print(f"created shared address book {book.name!r} ({book.guid}), owner {owner.name}")
    return 0


async def ab_share(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    user = None if args.everyone else await _user(db, args.user)
    rule = RULES[args.rule]

    def job(conn: sqlite3.Connection) -> ab.Book:
        books = ab.shared_named(conn, args.book)
        if len(books) != 1:
            raise ApiError(
                f"no shared address book named {args.book!r}"
                if not books
                else f"several books are named {args.book!r}: give its guid"
            )
        ab.set_rule(conn, books[0], user, rule)
        return books[0]

    book = await jobs.write(db, job)
    who = "everyone" if user is None else user.name
    print(f"{who}: {args.rule} on {book.name!r}")
    return 0


async def ab_list(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    for book, rules, count in await jobs.read(db, ab.list_shared):
        shared = ", ".join(f"{name}={rule}" for name, rule in rules) or "nobody"
        print(f"{book.name}\t{book.guid}\towner={book.owner_name}\tpeers={count}\t{shared}")
    return 0


async def group_add(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    try:
        await jobs.write(db, lambda c: devices.create_group(c, args.name))
    except Conflict:
        raise ApiError(f"a device group named {args.name!r} exists") from None
    print(f"created device group {args.name}")
    return 0


async def group_assign(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    group = None if args.group == "-" else args.group
    if not await jobs.write(db, lambda c: devices.assign_group(c, args.device_id, group)):
        raise ApiError(f"no device with ID {args.device_id!r} is registered")
    print(f"{args.device_id} is in {'no group' if group is None else group}")
    return 0


async def group_list(db: SqliteDatabase, args: argparse.Namespace, password: str) -> int:
    for name, count in await jobs.read(db, devices.list_groups):
        print(f"{name}\tdevices={count}")
    return 0


COMMANDS: dict[tuple[str, str], Command] = {
    ("user", "add"): user_add,
    ("user", "passwd"): user_passwd,
    ("user", "disable"): user_disable,
    ("user", "enable"): user_enable,
    ("user", "list"): user_list,
    ("ab", "create"): ab_create,
    ("ab", "share"): ab_share,
    ("ab", "list"): ab_list,
    ("group", "add"): group_add,
    ("group", "assign"): group_assign,
    ("group", "list"): group_list,
}
NEEDS_PASSWORD = {("user", "add"), ("user", "passwd")}
