"""What nodes send each other, and how directory entries are stored (docs/cluster.md §1.2-1.3).

Plain functions over bytes, shared by the NATS adapter, the bus handler and
``pyhbb cluster import|export``. Every decoder treats its input as hostile: a bad
message raises :class:`BadMessage`, never anything else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pyhbb.rendezvous.stored_peer import StoredPeer
from pyhbb.store.peers import ip_from_info
from pyhbb.wire.addr_mangle import Addr, ip_from_bytes, ip_to_bytes

SUBJECT_PREFIX = "hbb"
PEERS_BUCKET = "PEERS"
NODES_BUCKET = "NODES"
RELAYS_BUCKET = "RELAYS"
NODE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A node name is one subject token (and one KV key)."""
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,200}")
MAX_MESSAGE = 64 * 1024
MAX_ONLINE_IDS = 10_000


class BadMessage(ValueError):
    """A message or entry that does not decode: from a broken or hostile node."""


# -- subjects ---------------------------------------------------------------------------------


def node_subject(node: str, topic: str) -> str:
    """``hbb.n.<node>.<topic>``: requests to one node."""
    return f"{SUBJECT_PREFIX}.n.{node}.{topic}"


def answer_subject(key: Addr) -> str:
    """``hbb.rq.<hex>``: where B's answer for requester ``key`` is published (the hex of
    the requester's IP bytes and port, as ``try_into_v4`` normalised them)."""
    ip, port = key
    return f"{SUBJECT_PREFIX}.rq.{(ip_to_bytes(ip) + port.to_bytes(2, 'big')).hex()}"


def answer_key(subject: str) -> Addr:
    raw_hex = subject.rpartition(".")[2]
    try:
        raw = bytes.fromhex(raw_hex)
        if len(raw) not in (6, 18):
            raise ValueError(raw_hex)
        return ip_from_bytes(raw[:-2]), int.from_bytes(raw[-2:], "big")
    except ValueError as e:
        raise BadMessage(f"bad answer subject {subject!r}") from e


ONLINE_SUBJECT = f"{SUBJECT_PREFIX}.online"


# -- directory entries (PEERS bucket) -----------------------------------------------------------


def peer_key(peer_id: str) -> str:
    """The KV key of a peer id: the id itself when it is a valid key token, else ``x.``
    and its UTF-8 hex (a plain id has no dot, so the two never collide)."""
    if _PLAIN_KEY.fullmatch(peer_id):
        return peer_id
    return "x." + peer_id.encode().hex()


def peer_id_of_key(key: str) -> str:
    if key.startswith("x."):
        try:
            return bytes.fromhex(key[2:]).decode()
        except ValueError as e:
            raise BadMessage(f"bad peer key {key!r}") from e
    return key


@dataclass(frozen=True)
class Entry:
    """One directory entry: the official ``peer`` row (§10.4) plus the holder."""

    guid: bytes
    id: str
    uuid: bytes
    pk: bytes
    info: str
    """The row's ``info`` JSON text (``{"ip": ...}`` and whatever else it held)."""
    created_at: str = ""
    user: bytes | None = None
    status: int | None = None
    note: str | None = None
    owner: str = ""
    claimed_at: float = 0.0

    def stored(self, revision: int) -> StoredPeer:
        return StoredPeer(
            self.guid, self.id, self.uuid, self.pk, ip_from_info(self.info), self.owner, revision
        )


def encode_entry(entry: Entry) -> bytes:
    doc: dict[str, Any] = {
        "guid": entry.guid.hex(),
        "id": entry.id,
        "uuid": entry.uuid.hex(),
        "pk": entry.pk.hex(),
        "info": entry.info,
        "created_at": entry.created_at,
        "owner": entry.owner,
        "claimed_at": entry.claimed_at,
    }
    if entry.user is not None:
        doc["user"] = entry.user.hex()
    if entry.status is not None:
        doc["status"] = entry.status
    if entry.note is not None:
        doc["note"] = entry.note
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_entry(data: bytes) -> Entry:
    try:
        doc = json.loads(data)
        user = doc.get("user")
        status = doc.get("status")
        note = doc.get("note")
        entry = Entry(
            guid=bytes.fromhex(doc["guid"]),
            id=str(doc["id"]),
            uuid=bytes.fromhex(doc["uuid"]),
            pk=bytes.fromhex(doc["pk"]),
            info=str(doc["info"]),
            created_at=str(doc.get("created_at", "")),
            user=None if user is None else bytes.fromhex(user),
            status=None if status is None else int(status),
            note=None if note is None else str(note),
            owner=str(doc.get("owner", "")),
            claimed_at=float(doc.get("claimed_at", 0.0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadMessage(f"bad directory entry: {e}") from e
    return entry


# -- requests between nodes ---------------------------------------------------------------------


@dataclass(frozen=True)
class PunchRequest:
    peer_id: str
    request: bytes
    requester: Addr
    is_ws: bool
    relay_server: str


def _json(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE:
        raise BadMessage(f"message of {len(data)} bytes")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise BadMessage(str(e)) from e
    if not isinstance(doc, dict):
        raise BadMessage("not an object")
    return doc


def encode_punch(p: PunchRequest) -> bytes:
    doc = {
        "id": p.peer_id,
        "req": p.request.hex(),
        "a": [p.requester[0], p.requester[1]],
        "ws": p.is_ws,
        "relay": p.relay_server,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_punch(data: bytes) -> PunchRequest:
    doc = _json(data)
    try:
        ip, port = doc["a"]
        return PunchRequest(
            str(doc["id"]),
            bytes.fromhex(doc["req"]),
            (str(ip), int(port)),
            bool(doc["ws"]),
            str(doc["relay"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise BadMessage(f"bad punch request: {e}") from e


def encode_relay(peer_id: str, payload: bytes) -> bytes:
    return json.dumps({"id": peer_id, "msg": payload.hex()}, separators=(",", ":")).encode()


def decode_relay(data: bytes) -> tuple[str, bytes]:
    doc = _json(data)
    try:
        return str(doc["id"]), bytes.fromhex(doc["msg"])
    except (ValueError, KeyError, TypeError) as e:
        raise BadMessage(f"bad relay request: {e}") from e


def encode_evict(peer_id: str, revision: int) -> bytes:
    return json.dumps({"id": peer_id, "rev": revision}, separators=(",", ":")).encode()


def decode_evict(data: bytes) -> tuple[str, int]:
    doc = _json(data)
    try:
        return str(doc["id"]), int(doc["rev"])
    except (ValueError, KeyError, TypeError) as e:
        raise BadMessage(f"bad evict: {e}") from e


def encode_online(peers: list[str]) -> bytes:
    return json.dumps(peers[:MAX_ONLINE_IDS], separators=(",", ":")).encode()


def decode_online(data: bytes) -> list[str]:
    if len(data) > MAX_MESSAGE * 16:
        raise BadMessage(f"online request of {len(data)} bytes")
    try:
        peers = json.loads(data)
    except ValueError as e:
        raise BadMessage(str(e)) from e
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise BadMessage("online request is not a list of ids")
    return peers[:MAX_ONLINE_IDS]
