"""Signed IdPk, the proof of a peer's key that A checks (docs/protocol.md §5.4).

Apart from the key files (``wire.keys``), so that the rendezvous core can sign without
importing file handling.
"""

from __future__ import annotations

from nacl.signing import SigningKey

from pyhbb.wire.message_pb2 import IdPk


def sign_id_pk(key: SigningKey, peer_id: str, pk: bytes) -> bytes:
    """Signed IdPk in libsodium combined mode: 64-byte signature then the message."""
    msg = IdPk(id=peer_id, pk=pk).SerializeToString()
    return bytes(key.sign(msg))
