"""Child process of the read-only test: opens the store on a file it may not write.

Prints, as JSON, what each call did. Usage: python readonly_probe.py DB_PATH [UID]
With UID (when tests run as root, who may write anything), the process first drops to
that user; it imports everything before, since the interpreter may live under a
directory that user cannot read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore


async def outcome(call: Callable[[], Awaitable[Any]]) -> str:
    try:
        return repr(await call())
    except Exception as e:
        return type(e).__name__


async def main(db_path: str) -> None:
    report: dict[str, str] = {}
    try:
        db = await SqliteDatabase.open(db_path)
    except Exception as e:
        report["open"] = type(e).__name__
    else:
        report["open"] = "ok"
        store = SqlitePeerStore(db)
        report["get"] = await outcome(lambda: store.get("123456"))
        report["insert"] = await outcome(
            lambda: store.insert(b"g" * 16, "654321", b"u", bytes(32), "10.0.0.1")
        )
        report["get after"] = await outcome(lambda: store.get("123456"))
        report["count"] = await outcome(store.count)
        await store.close()
        await db.close()
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        uid = int(sys.argv[2])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    asyncio.run(main(sys.argv[1]))
