"""Child process of the kill -9 test: inserts rows until killed.

It prints each row's guid (hex) only after ``insert`` returned, i.e. once acknowledged.
Usage: python crash_writer.py DB_PATH
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from pyhbb.store.database import SqliteDatabase
from pyhbb.store.peers import SqlitePeerStore

CONCURRENCY = 16  # several writers at once, so that group commit batches them


async def main(db_path: str) -> None:
    store = SqlitePeerStore(await SqliteDatabase.open(db_path))
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while True:
            counter += 1
            guid = uuid.uuid4().bytes
            await store.insert(guid, f"crash-{counter}", b"uuid", bytes(32), "10.1.2.3")
            sys.stdout.write(guid.hex() + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
