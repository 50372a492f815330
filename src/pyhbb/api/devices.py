"""Devices are the rendezvous server's peers (docs/api.md #22-#25).

A device is a row of ``peer`` (written by hbbs on RegisterPk); what the API learns about
it (sysinfo, owner, device group, when it last called) is kept in ``api_device`` under
the same ``guid``, which stays when the device changes its ID. A device proves who it
is with its ``uuid``: the client sends base64 of the raw machine uuid it registered
with, and the API accepts data only when that equals ``peer.uuid`` for the ``id``.

The only ``peer`` column written here is ``note`` (a device note from ``preset-note``,
only while empty), for its evident purpose.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyhbb.api.http import ApiError, Fields
from pyhbb.api.users import User
from pyhbb.store.peers import as_bytes

MAX_DEVICE_ID = 100  # the width of peer.id
MAX_UUID_TEXT = 256
SYSINFO_FIELDS = ("cpu", "memory", "os", "hostname", "username", "version")
PRESET_USER = "preset-user-name"
PRESET_GROUP = "preset-device-group-name"
PRESET_NOTE = "preset-note"
PRESET_DEVICE_USERNAME = "preset-device-username"
PRESET_DEVICE_NAME = "preset-device-name"

SYSINFO_UPDATED = "SYSINFO_UPDATED"
ID_NOT_FOUND = "ID_NOT_FOUND"


def decode_uuid(text: str) -> bytes | None:
    """The raw uuid from the client's base64 text, or None when it is not base64."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw or None


@dataclass(frozen=True)
class DeviceProof:
    """The ``id`` and ``uuid`` every device-side call carries."""

    device_id: str
    uuid_text: str
    uuid: bytes | None

    @classmethod
    def from_fields(cls, fields: Fields) -> DeviceProof:
        device_id = fields.required_text("id", max_len=MAX_DEVICE_ID)
        uuid_text = fields.text("uuid", max_len=MAX_UUID_TEXT)
        return cls(device_id, uuid_text, decode_uuid(uuid_text))


@dataclass(frozen=True)
class Sysinfo:
    proof: DeviceProof
    fields: dict[str, str]
    preset_user: str
    preset_group: str
    preset_note: str

    @classmethod
    def from_fields(cls, body: Fields) -> Sysinfo:
        """What an upload is worth: the known string fields, preset names, nothing else."""
        proof = DeviceProof.from_fields(body)
        fields = {name: body.text(name, max_len=4096) for name in SYSINFO_FIELDS}
        # A preset device user / name stands in for what the OS reported.
        fields["username"] = body.text(PRESET_DEVICE_USERNAME, max_len=256) or fields["username"]
        fields["hostname"] = body.text(PRESET_DEVICE_NAME, max_len=256) or fields["hostname"]
        return cls(
            proof,
            fields,
            body.text(PRESET_USER, max_len=64),
            body.text(PRESET_GROUP, max_len=256),
            body.text(PRESET_NOTE, max_len=300),
        )


def iso_time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- jobs -----------------------------------------------------------------------------------


def peer_guid(conn: sqlite3.Connection, proof: DeviceProof) -> bytes | None:
    """The guid of the peer with this id whose uuid matches, else None."""
    if proof.uuid is None:
        return None
    row = conn.execute(
        "select guid from peer where id = ? and uuid = ?", (proof.device_id, proof.uuid)
    ).fetchone()
    return None if row is None else as_bytes(row[0])


def claim(conn: sqlite3.Connection, proof: DeviceProof, user_id: int) -> bool:
    """Make ``user_id`` the owner of the device (the latest login on it wins)."""
    guid = peer_guid(conn, proof)
    if guid is None:
        return False
    conn.execute(
        "insert into api_device (guid, owner_id) values (?, ?) "
        "on conflict (guid) do update set owner_id = excluded.owner_id",
        (guid, user_id),
    )
    return True


def store_sysinfo(conn: sqlite3.Connection, info: Sysinfo, ip: str, now: float) -> bool:
    """Store an upload; False (ID_NOT_FOUND) when id and uuid name no peer."""
    guid = peer_guid(conn, info.proof)
    if guid is None:
        return False
    f = info.fields
    conn.execute(
        "insert into api_device (guid, sysinfo, sysinfo_at, hostname, os, username, version, "
        "last_seen, last_ip) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (guid) do update "
        "set sysinfo = excluded.sysinfo, sysinfo_at = excluded.sysinfo_at, "
        "hostname = excluded.hostname, os = excluded.os, username = excluded.username, "
        "version = excluded.version, last_seen = excluded.last_seen, last_ip = excluded.last_ip",
        (
            guid,
            json.dumps(f, ensure_ascii=False),
            now,
            f["hostname"],
            f["os"],
            f["username"],
            f["version"],
            now,
            ip,
        ),
    )
    owner = conn.execute("select owner_id from api_device where guid = ?", (guid,)).fetchone()[0]
    if owner is None:
        owner = _owner_from_logins(conn, info.proof) or _user_id(conn, info.preset_user)
        if owner is not None:
            conn.execute("update api_device set owner_id = ? where guid = ?", (owner, guid))
    if info.preset_group:
        conn.execute(
            "update api_device set group_id = (select id from api_device_group where name = ?) "
            "where guid = ? and group_id is null",
            (info.preset_group, guid),
        )
    if info.preset_note:
        conn.execute(
            "update peer set note = ? where guid = ? and coalesce(note, '') = ''",
            (info.preset_note, guid),
        )
    return True


def _owner_from_logins(conn: sqlite3.Connection, proof: DeviceProof) -> int | None:
    row = conn.execute(
        "select user_id from api_login_log where device_id = ? and device_uuid = ? and ok = 1 "
        "and user_id is not null order by at desc limit 1",
        (proof.device_id, proof.uuid_text),
    ).fetchone()
    return None if row is None else int(row[0])


def _user_id(conn: sqlite3.Connection, name: str) -> int | None:
    if not name:
        return None
    row = conn.execute("select id from api_user where name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    status: int
    note: str
    hostname: str
    os: str
    username: str
    owner_guid: bytes | None
    owner_name: str
    group_name: str
    last_seen: float | None

    def payload(self, online: bool | None, last_online: float | None) -> dict[str, Any]:
        return {
            "id": self.device_id,
            "info": {"device_name": self.hostname, "os": self.os, "username": self.username},
            "status": self.status,
            "user": str(uuid.UUID(bytes=self.owner_guid)) if self.owner_guid else "",
            "user_name": self.owner_name,
            "device_group_name": self.group_name,
            "note": self.note,
            "is_online": online,
            "last_online": iso_time(last_online),
        }


_DEVICE_SELECT = (
    "select p.id, p.status, p.note, d.hostname, d.os, d.username, u.guid, u.name, g.name, "
    "d.last_seen from peer p left join api_device d on d.guid = p.guid "
    "left join api_user u on u.id = d.owner_id "
    "left join api_device_group g on g.id = d.group_id"
)


def device_page(
    conn: sqlite3.Connection, viewer: User, offset: int, limit: int
) -> tuple[int, list[DeviceRow]]:
    """Admins see every peer; a user sees the devices they own."""
    if viewer.is_admin:
        (total,) = conn.execute("select count(*) from peer").fetchone()
        rows = conn.execute(
            f"{_DEVICE_SELECT} order by p.id limit ? offset ?", (limit, offset)
        ).fetchall()
    else:
        (total,) = conn.execute(
            "select count(*) from api_device d join peer p on p.guid = d.guid where d.owner_id = ?",
            (viewer.id,),
        ).fetchone()
        rows = conn.execute(
            f"{_DEVICE_SELECT} where d.owner_id = ? order by p.id limit ? offset ?",
            (viewer.id, limit, offset),
        ).fetchall()
    return int(total), [_device_row(r) for r in rows]


def _device_row(r: tuple[Any, ...]) -> DeviceRow:
    peer_id, status, note, hostname, os_, username, owner_guid, owner, group, seen = r
    return DeviceRow(
        str(peer_id),
        1 if status is None else int(status),
        note or "",
        hostname or "",
        os_ or "",
        username or "",
        as_bytes(owner_guid) if owner_guid is not None else None,
        owner or "",
        group or "",
        None if seen is None else float(seen),
    )


def group_page(
    conn: sqlite3.Connection, viewer: User, offset: int, limit: int
) -> tuple[int, list[str]]:
    """Admins see every device group; a user the groups of the devices they own."""
    if viewer.is_admin:
        sql = "select name from api_device_group"
        args: tuple[Any, ...] = ()
    else:
        sql = (
            "select distinct g.name from api_device_group g join api_device d "
            "on d.group_id = g.id where d.owner_id = ?"
        )
        args = (viewer.id,)
    (total,) = conn.execute(f"select count(*) from ({sql})", args).fetchone()
    rows = conn.execute(f"{sql} order by 1 limit ? offset ?", (*args, limit, offset)).fetchall()
    return int(total), [str(r[0]) for r in rows]


def create_group(conn: sqlite3.Connection, name: str, note: str = "") -> int:
    cur = conn.execute("insert into api_device_group (name, note) values (?, ?)", (name, note))
    return int(cur.lastrowid or 0)


def assign_group(conn: sqlite3.Connection, device_id: str, group: str | None) -> bool:
    """Put a device (by its current ID) in a group (None: no group); False if unknown."""
    row = conn.execute("select guid from peer where id = ?", (device_id,)).fetchone()
    if row is None:
        return False
    group_id = None
    if group is not None:
        found = conn.execute("select id from api_device_group where name = ?", (group,)).fetchone()
        if found is None:
            raise ApiError(f"no device group named {group!r}", 404)
        group_id = int(found[0])
    conn.execute(
        "insert into api_device (guid, group_id) values (?, ?) "
        "on conflict (guid) do update set group_id = excluded.group_id",
        (as_bytes(row[0]), group_id),
    )
    return True


def list_groups(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return [
        (str(name), int(n))
        for name, n in conn.execute(
            "select g.name, count(d.guid) from api_device_group g left join api_device d "
            "on d.group_id = g.id group by g.id order by g.name"
        )
    ]


def flush_heartbeats(
    conn: sqlite3.Connection, beats: Iterable[tuple[str, str, float, str]]
) -> list[str]:
    """Record (id, uuid text, time, ip) of heartbeats; returns ids that have no sysinfo."""
    wanted: list[str] = []
    for device_id, uuid_text, at, ip in beats:
        raw = decode_uuid(uuid_text)
        if raw is None:
            continue
        row = conn.execute(
            "insert into api_device (guid, last_seen, last_ip) "
            "select guid, ?, ? from peer where id = ? and uuid = ? "
            "on conflict (guid) do update set last_seen = max(coalesce(last_seen, 0), "
            "excluded.last_seen), last_ip = excluded.last_ip "
            "returning guid, sysinfo_at",  # (an expression here misreads on SQLite 3.40)
            (at, ip, device_id, raw),
        ).fetchone()
        if row is not None and row[1] is None:
            wanted.append(device_id)
    return wanted
