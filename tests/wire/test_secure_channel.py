"""Secure TCP handshake against the transcript of docs/protocol.md §14.5."""

from __future__ import annotations

import base64

import pytest
from nacl.public import Box, PrivateKey
from nacl.signing import VerifyKey

from pyhbb.wire import keys
from pyhbb.wire.framing import encode_frame
from pyhbb.wire.rendezvous_pb2 import KeyExchange, RendezvousMessage
from pyhbb.wire.secure_channel import HandshakeError, SecureSession, ServerHandshake

SECRET_B64 = (
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
)
SERVER_EPH_PK = "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20"
HELLO_FRAME = (
    "9501ca01620a60"
    "17539d09e7c6fa9e63ffbf94ab7380643b22b0a4991a7f3b7aa3032769c26820"
    "5cc3e8266c1dbaeefe70515029e15194ef7f0065204bcc31bc424e046eb0870a" + SERVER_EPH_PK
)
CLIENT_PK = "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14"
SEALED = (
    "140f89751d452e39c46974a9953fec0d932c559502cf578760f595f7035e2be1"
    "32a009f1bef75e53f39cca0d0a64aee1"
)
PLAIN = bytes.fromhex("320b0a09313233343536373839")
FIRST = "97ac1fdb82e73f50875d2d90d628b16abbd6884f4ac4eaf106f7d1d66b"
SECOND = "3d5dc4b9c36df2f2d0e9194167bcb3803b7087ee2b2d14bb1228a8e97d"


def _server() -> ServerHandshake:
    signing = keys.signing_key_from_secret(base64.b64decode(SECRET_B64))
    return ServerHandshake(signing, PrivateKey(b"\x22" * 32))


def test_hello_frame_vector() -> None:
    assert encode_frame(_server().hello()).hex() == HELLO_FRAME


def test_client_reply_vector_and_box_layout() -> None:
    client_sk = PrivateKey(b"\x33" * 32)
    assert bytes(client_sk.public_key).hex() == CLIENT_PK
    server_pk = PrivateKey(b"\x22" * 32).public_key
    sealed = Box(client_sk, server_pk).encrypt(b"\x44" * 32, bytes(24)).ciphertext
    assert sealed.hex() == SEALED
    reply = RendezvousMessage(key_exchange=KeyExchange(keys=[bytes(client_sk.public_key), sealed]))
    payload = reply.SerializeToString()
    assert len(payload) == 87 and encode_frame(payload)[:2].hex() == "5d01"
    assert payload.hex().startswith("ca01540a20" + CLIENT_PK + "0a30")


def test_handshake_and_counters() -> None:
    server = _server()
    msg = KeyExchange(keys=[bytes.fromhex(CLIENT_PK), bytes.fromhex(SEALED)])
    session = server.finish(msg)
    assert session.decrypt(bytes.fromhex(FIRST)) == PLAIN
    assert session.decrypt(bytes.fromhex(SECOND)) == PLAIN
    # The server's own first message also uses counter 1.
    assert session.encrypt(PLAIN).hex() == FIRST
    assert session.encrypt(PLAIN).hex() == SECOND


def test_short_payloads_pass_in_clear_without_counting() -> None:
    session = SecureSession(b"\x44" * 32)
    assert session.encrypt(b"") == b""
    assert session.encrypt(b"\x07") == b"\x07"
    assert session.encrypt(PLAIN).hex() == FIRST


def test_hello_verifies_with_server_public_key() -> None:
    server = _server()
    msg = RendezvousMessage()
    msg.ParseFromString(server.hello())
    (signed,) = msg.key_exchange.keys
    verify = VerifyKey(base64.b64decode(SECRET_B64)[32:])
    assert verify.verify(signed).hex() == SERVER_EPH_PK


@pytest.mark.parametrize(
    "keys_",
    [[], [b"\x00" * 32], [b"\x00" * 32, b"\x00" * 47], [b"\x00" * 31, b"\x00" * 48]],
)
def test_bad_shapes_refused(keys_: list[bytes]) -> None:
    with pytest.raises(HandshakeError):
        _server().finish(KeyExchange(keys=keys_))


def test_forged_box_refused() -> None:
    with pytest.raises(HandshakeError):
        _server().finish(KeyExchange(keys=[bytes.fromhex(CLIENT_PK), b"\x01" * 48]))


def test_tampered_frame_refused() -> None:
    session = _server().finish(KeyExchange(keys=[bytes.fromhex(CLIENT_PK), bytes.fromhex(SEALED)]))
    bad = bytearray(bytes.fromhex(FIRST))
    bad[-1] ^= 1
    with pytest.raises(HandshakeError):
        session.decrypt(bytes(bad))
