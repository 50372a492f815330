"""The console's device search: each device's ID, host name and OS user name in memory.

Why not SQL alone: a substring (``LIKE '%text%'``) cannot use a B-tree index, so every
search scanned ``peer`` and ``api_device`` (~0.2-0.3 s at 100k devices). An FTS5 trigram
index was measured too: fast for rare terms, slower than the scan for common ones (every
row matching "host"), blind to terms shorter than three characters, and it would need
the API to write a copy of the IDs that hbbs changes from another process. Here the
texts of all devices, lowercased and concatenated, are searched with ``bytes.find`` (C
speed: ~3 ms for 100k devices, ~30 ms for 1M; ~63 bytes a device);
:mod:`pyhbb.api.device_list` then checks every candidate against the tables in SQL, so
a stale index can miss a device for a bounded time but never shows one that does not
match. bench/RESULTS.md has the figures.

Matching is SQLite's ``LIKE``: UTF-8 text, case folded for ASCII letters only, so the
index and the SQL check agree.

Layout: 256 *chunks* by the first byte of ``peer.guid`` (random in hbbs's rows), each an
immutable :class:`Chunk`. A search reads chunk references (any database thread may);
only the upkeep job replaces them, one list item at a time (atomic in CPython).

Freshness, without triggers or columns on ``peer`` (hbbs writes it from another process),
done by :meth:`DeviceSearch.keep_fresh` every :data:`TICK` seconds in one read job:

* the rows created in the last :data:`RECENT` seconds (the official index on
  ``peer.created_at``) are read again: a new registration, and the host and user name
  its first sysinfo upload brings, are found within about a second;
* a few chunks are read again whole (a range of the primary key), in turn, so that each
  is re-read within about :data:`CYCLE` seconds (52 s: 5 chunks a tick; at most ~2,000
  rows a tick, so beyond ~130k devices the turn is longer: 256 s at 1M): an ID change, a
  new host or user name of an older device, a deletion, or a row another writer
  committed late is found within that (:attr:`DeviceSearch.reread_every`).

Until every chunk was read once (~1 s at 100k devices, ~10 s at 1M) :meth:`find`
answers ``None``; the console waits for it (:meth:`wait_ready`), then scans in SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import sqlite3
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pyhbb.store.database import SqliteDatabase, StoreError

log = logging.getLogger("pyhbb.api.console")

CHUNKS = 256
TICK = 1.0
CYCLE = 60.0
PER_TICK = math.ceil(CHUNKS * TICK / CYCLE)
REREAD_ROWS = 2000  # per tick: ~1-2 % of a core here; beyond ~130k devices CYCLE grows
RECENT = 60
MAX_RECENT = 2000  # a burst of new devices beyond this waits for its chunks' turn
FIRST_LOAD_BATCH = 32  # chunks per read job until the index is complete
ROW_END = b"\x00"  # after each device's text; never in a search (the console refuses NUL)
FIELD_SEP = b"\x01"
GUID_SIZE = 16  # hbbs's guids: a UUID's bytes

# A device's search text, made by SQLite: ID, host and user name lowered as LIKE compares
# them (ASCII letters only), as UTF-8 bytes; and the ID alone.
_ROWS = (
    "select p.guid, cast(lower(p.id || char(1) || ifnull(d.hostname, '') || char(1) || "
    "ifnull(d.username, '')) as blob), cast(lower(p.id) as blob) "
    "from peer p left join api_device d on d.guid = p.guid"
)

Row = tuple[object, bytes, bytes]  # guid as stored, search text, ID alone


def needle(text: str) -> bytes:
    """What to look for: ``text`` folded as the devices' texts are (ASCII letters)."""
    return text.encode("utf-8", "replace").lower()


def chunk_of(guid: object) -> int:
    """The chunk of a guid: its first byte (values that sort before blobs go to 0)."""
    return guid[0] if isinstance(guid, bytes) and guid else 0


def _range(k: int) -> tuple[str, tuple[bytes, ...]]:
    """The primary-key range of chunk ``k``: in SQLite text and numbers sort before
    every blob, so chunk 0 also holds guids another writer stored as such."""
    if k == 0:
        return "p.guid < ?", (b"\x01",)
    if k == CHUNKS - 1:
        return "p.guid >= ?", (bytes([k]),)
    return "p.guid >= ? and p.guid < ?", (bytes([k]), bytes([k + 1]))


@dataclass(frozen=True, slots=True)
class Texts:
    """Byte strings, each followed by ROW_END in one blob: searched at C speed."""

    blob: bytes
    ends: array[int]
    """Offset of each string's ROW_END in ``blob``."""

    @classmethod
    def of(cls, texts: Sequence[bytes]) -> Texts:
        # Built-in functions only (no Python-level step per string): the sum of
        # len + 1 up to and including each string, minus one.
        sums = itertools.accumulate(map((1).__add__, map(len, texts)))
        ends = array("I", map((-1).__add__, sums))
        return cls(ROW_END.join(texts) + ROW_END if texts else b"", ends)

    def holding(self, what: bytes) -> Iterator[int]:
        """The index of each string that holds ``what``, once, in order."""
        blob, ends = self.blob, self.ends
        at = blob.find(what)
        while at >= 0:
            i = bisect_left(ends, at)  # the string whose end comes first after ``at``
            yield i
            at = blob.find(what, ends[i] + 1)

    def count(self, what: re.Pattern[bytes]) -> int:
        """How many strings match ``what`` (see :meth:`DeviceSearch.count`)."""
        return len(what.findall(self.blob))

    def __getitem__(self, i: int) -> bytes:
        return self.blob[self.ends[i - 1] + 1 if i else 0 : self.ends[i]]

    def split(self) -> list[bytes]:
        return self.blob.split(ROW_END)[:-1]


class Guids:
    """A chunk's guids in row order. hbbs's are 16-byte blobs: packed in one bytes object
    (16 bytes each, not ~57 as objects of their own); any other kind in a tuple."""

    __slots__ = ("_any", "_n", "_packed")

    def __init__(self, guids: Sequence[object]) -> None:
        self._n = len(guids)
        self._packed: bytes | None = None
        self._any: tuple[object, ...] = ()
        blobs = cast("Sequence[bytes]", guids)  # join raises TypeError if they are not
        try:
            packed = b"".join(blobs)
            if set(map(len, blobs)) <= {GUID_SIZE}:
                self._packed = packed
        except TypeError:
            pass
        if self._packed is None:
            self._any = tuple(guids)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> object:
        if self._packed is None:
            return self._any[i]
        return self._packed[i * GUID_SIZE : (i + 1) * GUID_SIZE]

    def index(self, guid: object) -> int:
        """The row of ``guid``; ValueError if it is not in the chunk."""
        if self._packed is None:
            return self._any.index(guid)
        if not isinstance(guid, bytes) or len(guid) != GUID_SIZE:
            raise ValueError(guid)
        at = self._packed.find(guid)
        while at >= 0 and at % GUID_SIZE:  # found across two guids: look further
            at = self._packed.find(guid, at + 1)
        if at < 0:
            raise ValueError(guid)
        return at // GUID_SIZE

    def all(self) -> list[object]:
        return [self[i] for i in range(self._n)] if self._packed is not None else [*self._any]

    def size(self) -> int:
        """Bytes held (for the benchmark's figures)."""
        if self._packed is not None:
            return sys.getsizeof(self._packed)
        return sys.getsizeof(self._any) + sum(sys.getsizeof(g) for g in self._any)


@dataclass(frozen=True, slots=True)
class Chunk:
    """The devices of one guid range: their guids, texts and IDs alone."""

    guids: Guids
    texts: Texts
    ids: Texts

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Chunk:
        columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) or [(), (), ()]
        guids, texts, ids = columns
        return cls(Guids(guids), Texts.of(texts), Texts.of(ids))

    def find(self, what: bytes, found: list[object], limit: int, ids_only: bool) -> None:
        """Append to ``found`` the guids of devices whose text (or ID) holds ``what``."""
        guids = self.guids
        for i in (self.ids if ids_only else self.texts).holding(what):
            if len(found) >= limit:
                return
            found.append(guids[i])

    def updated(self, rows: list[Row]) -> Chunk:
        """This chunk with ``rows`` put in (new devices, changed texts)."""
        changed = {}
        for guid, text, peer_id in rows:
            try:
                if self.texts[self.guids.index(guid)] == text:
                    continue
            except ValueError:
                pass
            changed[guid] = (text, peer_id)
        if not changed:
            return self
        current = dict(
            zip(
                self.guids.all(),
                zip(self.texts.split(), self.ids.split(), strict=True),
                strict=True,
            )
        )
        current.update(changed)
        return Chunk.of((g, t, i) for g, (t, i) in current.items())

    def __len__(self) -> int:
        return len(self.guids)


class DeviceSearch:
    """The index of every device's search text, and its upkeep (see the module doc)."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        """Seconds between upkeep steps (tests shorten it)."""
        self._chunks: list[Chunk | None] = [None] * CHUNKS
        self._turn = 0  # the next chunk to read again
        self._recent: dict[object, bytes] = {}  # recent rows as last read
        self._complete = asyncio.Event()
        self.ready = False
        """Every chunk was read at least once: :meth:`find` answers."""
        self.failing = False
        """The last upkeep step could not read the database."""

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the index is complete (at most ``timeout`` seconds; not at all
        while the database cannot be read)."""
        if not self.ready and not self.failing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._complete.wait(), timeout)
        return self.ready

    def find(self, text: str, limit: int, *, ids_only: bool = False) -> list[object] | None:
        """Guids of up to ``limit`` devices whose ID, host or user name (or ID alone)
        contain ``text``, in no order, to be checked in SQL; None before the index is
        complete."""
        if not self.ready:
            return None
        what = needle(text)
        found: list[object] = []
        if not what or ROW_END in what:
            return found
        for chunk in self._chunks:
            if len(found) >= limit:
                break
            if chunk is not None:
                chunk.find(what, found, limit, ids_only)
        return found

    def count(self, text: str, limit: int) -> int | None:
        """How many devices match, counted up to about ``limit`` (a whole chunk more at
        most); None before the index is complete. Quicker than :meth:`find` for many."""
        if not self.ready:
            return None
        what = needle(text)
        if not what or ROW_END in what:
            return 0
        # One match per device: the text found, then the rest of that device's text.
        pattern = re.compile(re.escape(what) + b"[^" + re.escape(ROW_END) + b"]*")
        n = 0
        for chunk in self._chunks:
            if n >= limit:
                break
            if chunk is not None:
                n += chunk.texts.count(pattern)
        return n

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks if c is not None)

    def _per_tick(self) -> int:
        return max(1, min(PER_TICK, REREAD_ROWS * CHUNKS // max(1, len(self))))

    @property
    def reread_every(self) -> float:
        """Seconds within which every device is read again (the bound on ID changes)."""
        return math.ceil(CHUNKS / self._per_tick()) * self.tick

    def upkeep(self, conn: sqlite3.Connection) -> None:
        """One step, on a database thread (one job at a time): read the recent rows and
        the chunks whose turn it is (until complete: the missing ones) again."""
        if self.ready:
            n = self._per_tick()
            due = [(self._turn + i) % CHUNKS for i in range(n)]
            self._turn = (self._turn + n) % CHUNKS
        else:
            missing = [k for k, c in enumerate(self._chunks) if c is None]
            due = missing[:FIRST_LOAD_BATCH]
        for k in due:
            where, args = _range(k)
            self._chunks[k] = Chunk.of(_read(conn, f"{_ROWS} where {where}", args))
        recent = _read(
            conn,
            f"{_ROWS} where p.created_at >= datetime('now', ?) order by p.created_at desc limit ?",
            (f"-{RECENT} seconds", MAX_RECENT),
        )
        seen, self._recent = self._recent, {row[0]: row[1] for row in recent}
        by_chunk: dict[int, list[Row]] = {}
        for row in recent:
            if seen.get(row[0]) != row[1]:  # new, or its text changed since the last tick
                by_chunk.setdefault(chunk_of(row[0]), []).append(row)
        for k, rows in by_chunk.items():
            chunk = self._chunks[k]
            if chunk is not None:  # else its first read, still to come, has these rows
                self._chunks[k] = chunk.updated(rows)
        self.ready = self.ready or all(c is not None for c in self._chunks)

    async def keep_fresh(self, db: SqliteDatabase) -> None:
        """Run :meth:`upkeep` every ``tick`` seconds (back to back until complete)."""
        started = time.monotonic()
        while True:
            was_ready = self.ready
            try:
                await db.read(self.upkeep)
                if self.failing:
                    log.info("device search index: reading the database again")
                self.failing = False
            except StoreError as e:
                if not self.failing:
                    log.warning("device search index not refreshed (will retry): %s", e)
                self.failing = True
            if self.ready and not was_ready:
                self._complete.set()
                log.info(
                    "device search index ready: %d devices in %.1f s",
                    len(self),
                    time.monotonic() - started,
                )
            if self.ready or self.failing:
                await asyncio.sleep(self.tick)


def _read(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[Row]:
    # A NUL (SQLite's replace() cannot change it) would end a device's text early.
    return [
        (guid, text.replace(ROW_END, FIELD_SEP), peer_id.replace(ROW_END, FIELD_SEP))
        for guid, text, peer_id in conn.execute(sql, args)
    ]
