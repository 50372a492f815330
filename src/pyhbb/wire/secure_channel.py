"""Server side of RustDesk's ``secure_tcp`` handshake and encrypted framing (docs/protocol.md §7.3).

The server signs a fresh Curve25519 public key with its Ed25519 key and sends it in a
``KeyExchange``; a client that answers ``KeyExchange{[its box pk, crypto_box(session key)]}``
gets a secretbox session with per-direction 64-bit counters. Payloads of 0 or 1 bytes are
never encrypted and do not advance the counters (heartbeats stay in clear).
"""

from __future__ import annotations

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from pyhbb.wire.rendezvous_pb2 import KeyExchange, RendezvousMessage

_ZERO_NONCE = bytes(24)
_NONCE_TAIL = bytes(16)


class HandshakeError(Exception):
    """The client's KeyExchange cannot be used; the connection must be closed."""


class SecureSession:
    """Encrypts outgoing and decrypts incoming frame payloads of one connection."""

    __slots__ = ("_box", "_recv", "_send")

    def __init__(self, key: bytes) -> None:
        self._box = SecretBox(key)
        self._send = 0
        self._recv = 0

    def encrypt(self, payload: bytes) -> bytes:
        if len(payload) <= 1:
            return payload
        self._send += 1
        nonce = self._send.to_bytes(8, "little") + _NONCE_TAIL
        return self._box.encrypt(payload, nonce).ciphertext

    def decrypt(self, payload: bytes) -> bytes:
        """Open one payload; raises :class:`HandshakeError` when it does not authenticate."""
        if len(payload) <= 1:
            return payload
        self._recv += 1
        nonce = self._recv.to_bytes(8, "little") + _NONCE_TAIL
        try:
            return self._box.decrypt(payload, nonce)
        except CryptoError as e:
            raise HandshakeError("encrypted frame failed to authenticate") from e


class ServerHandshake:
    """One connection's handshake: :meth:`hello` to send, :meth:`finish` on the reply."""

    __slots__ = ("_ephemeral", "_signing")

    def __init__(self, signing: SigningKey, ephemeral: PrivateKey | None = None) -> None:
        self._signing = signing
        self._ephemeral = ephemeral if ephemeral is not None else PrivateKey.generate()

    def hello(self) -> bytes:
        """Serialized ``RendezvousMessage{key_exchange}`` carrying our signed box key."""
        signed = bytes(self._signing.sign(bytes(self._ephemeral.public_key)))
        msg = RendezvousMessage(key_exchange=KeyExchange(keys=[signed]))
        return msg.SerializeToString()

    @staticmethod
    def is_client_reply(msg: KeyExchange) -> bool:
        """Whether ``msg`` has the shape of a client's answer (32-byte key, 48-byte box)."""
        return len(msg.keys) == 2 and len(msg.keys[0]) == 32 and len(msg.keys[1]) == 48

    def finish(self, msg: KeyExchange) -> SecureSession:
        if not self.is_client_reply(msg):
            raise HandshakeError("KeyExchange reply must hold a 32-byte key and a 48-byte box")
        box = Box(self._ephemeral, PublicKey(msg.keys[0]))
        try:
            key = box.decrypt(msg.keys[1], _ZERO_NONCE)
        except CryptoError as e:
            raise HandshakeError("client's sealed session key does not open") from e
        if len(key) != 32:
            raise HandshakeError(f"session key must be 32 bytes, got {len(key)}")
        return SecureSession(key)
