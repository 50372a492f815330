"""Audit ingestion (docs/api.md #27-#29): connection, file and alarm events.

Events are appended, never changed. The client retries a post whose answer was not an
empty 2xx, with the same ``nonce``; a second copy is recognised by (device id, nonce) and
dropped, and still answered 200 with an empty body, so the client stops retrying.
Events come only from devices hbbs knows (``id`` and ``uuid`` match ``peer``), else
``ID_NOT_FOUND`` with a 400, which the client drops. The exception is the controlling
side's note (``{id, session_id, note}``), which carries the user's token instead.

A connection's events share ``conn_id`` (a counter in the controlled client's process,
so it repeats after that process restarts): each event is joined at insert time to the
latest ``new`` event of the same device and ``conn_id`` (``conn_ref``), and
:func:`connections` reads one row per connection from that.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from pyhbb.api.devices import DeviceProof, peer_guid
from pyhbb.api.http import ApiError, Fields

MAX_TEXT = 4096
ID_NOT_FOUND = "ID_NOT_FOUND"


@dataclass(frozen=True)
class Event:
    """A validated audit post: common fields plus the table's own columns."""

    table: str
    proof: DeviceProof
    nonce: str | None
    conn_id: int | None
    columns: dict[str, Any]
    body: str


def _common(fields: Fields) -> tuple[DeviceProof, str | None, int | None]:
    proof = DeviceProof.from_fields(fields)
    nonce = fields.text("nonce", max_len=128) or None
    conn_id = fields.integer("conn_id")
    return proof, nonce, conn_id


def _peer(fields: Fields) -> tuple[str, str]:
    """``peer: [id, name]`` of the authenticated controller."""
    value = fields.data.get("peer")
    if value is None:
        return "", ""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError("'peer' must be an array of strings")
    items = [v[:256] for v in value] + ["", ""]
    return items[0], items[1]


def _text_or_json(fields: Fields, name: str) -> str:
    """``info`` is a JSON string in the client; accept an object too and keep it as text."""
    value = fields.data.get(name)
    if value is None or isinstance(value, str):
        return fields.text(name, max_len=MAX_TEXT * 4)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)[: MAX_TEXT * 4]
    raise ApiError(f"'{name}' must be a string or an object")


def _session_id(fields: Fields) -> str:
    value = fields.data.get("session_id")
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fields.text("session_id", max_len=64)


def conn_event(fields: Fields, raw: str) -> Event:
    proof, nonce, conn_id = _common(fields)
    peer_id, peer_name = _peer(fields)
    columns = {
        "session_id": _session_id(fields),
        "action": fields.text("action", max_len=32),
        "ip": fields.text("ip", max_len=64),
        "peer_id": peer_id,
        "peer_name": peer_name,
        "type": fields.integer("type"),
        "note": fields.text("note", max_len=MAX_TEXT),
    }
    return Event("api_audit_conn", proof, nonce, conn_id, columns, raw)


def file_event(fields: Fields, raw: str) -> Event:
    proof, nonce, conn_id = _common(fields)
    is_file = fields.flag("is_file")
    columns = {
        "peer_id": fields.text("peer_id", max_len=256),
        "type": fields.integer("type"),
        "path": fields.text("path", max_len=MAX_TEXT),
        "is_file": None if is_file is None else int(is_file),
        "info": _text_or_json(fields, "info"),
    }
    return Event("api_audit_file", proof, nonce, conn_id, columns, raw)


def alarm_event(fields: Fields, raw: str) -> Event:
    proof, nonce, conn_id = _common(fields)
    columns = {"typ": fields.integer("typ"), "info": _text_or_json(fields, "info")}
    return Event("api_audit_alarm", proof, nonce, conn_id, columns, raw)


# -- jobs -----------------------------------------------------------------------------------


def store(conn: sqlite3.Connection, event: Event, now: float, user_id: int | None) -> bool:
    """Append the event; False when the device is unknown. A repeated nonce is a no-op.

    ``user_id`` is set for the controlling side's note, which names the device only by
    ``id`` and is vouched for by the user's token instead of the device's uuid.
    """
    guid = peer_guid(conn, event.proof)
    if guid is None and user_id is None:
        return False
    columns = dict(event.columns)
    if event.table == "api_audit_conn":
        columns["user_id"] = user_id
        if columns["action"] != "new" and event.conn_id is not None:
            row = conn.execute(
                "select id from api_audit_conn where device_id = ? and conn_id = ? "
                "and action = 'new' order by id desc limit 1",
                (event.proof.device_id, event.conn_id),
            ).fetchone()
            columns["conn_ref"] = None if row is None else row[0]
    columns.update(
        at=now,
        device_id=event.proof.device_id,
        device_guid=guid,
        conn_id=event.conn_id,
        nonce=event.nonce,
        body=event.body,
    )
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    # Table and column names are fixed above; every value is a bound parameter.
    conn.execute(
        f"insert into {event.table} ({names}) values ({marks}) on conflict do nothing",
        tuple(columns.values()),
    )
    return True


def connections(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """One row per connection (newest first): opened, authenticated by whom, closed."""
    rows = conn.execute(
        "select coalesce(conn_ref, id) as ref, max(device_id), max(conn_id), "
        "min(case when action = 'new' then at end), "
        "max(case when action = 'new' then ip end), "
        "max(case when peer_id != '' then peer_id end), "
        "max(case when peer_name != '' then peer_name end), "
        "max(type), max(case when action = 'close' then at end), count(*) "
        "from api_audit_conn where conn_id is not null group by ref order by ref desc limit ?",
        (limit,),
    ).fetchall()
    keys = (
        "ref",
        "device_id",
        "conn_id",
        "opened_at",
        "ip",
        "peer_id",
        "peer_name",
        "type",
        "closed_at",
        "events",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]
