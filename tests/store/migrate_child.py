"""Child process of the concurrent-migration test: opens the database with one slow step.

Waits until the START file exists (so that every child opens at the same moment), then
opens DB_PATH with the migration and prints a JSON report.
Usage: python migrate_child.py DB_PATH START
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time

from pyhbb.store.database import Migration, SqliteDatabase


def slow_step(conn: sqlite3.Connection) -> None:
    # Without "if not exists": a second application would fail here.
    conn.execute("create table api_once (pid integer not null)")
    conn.execute("insert into api_once (pid) values (?)", (os.getpid(),))
    time.sleep(0.3)  # hold the write lock while the other children try to migrate


MIGRATIONS = [Migration("api", 1, "slow first step", slow_step)]


async def main(db_path: str, start: str) -> None:
    while not os.path.exists(start):
        time.sleep(0.001)
    report: dict[str, object] = {"pid": os.getpid()}
    applied: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: applied.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("pyhbb.store").addHandler(handler)
    logging.getLogger("pyhbb.store").setLevel(logging.INFO)
    try:
        db = await SqliteDatabase.open(db_path, busy_timeout=30, migrations=MIGRATIONS)
    except Exception as e:
        report["error"] = f"{type(e).__name__}: {e}"
    else:
        report["applied"] = [m for m in applied if "applied migration" in m]
        await db.close()
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
