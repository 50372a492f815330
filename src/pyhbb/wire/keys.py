"""Server key files and the ``-k``/``KEY`` value (docs/protocol.md §5).

Key files live in the working directory: ``id_ed25519`` holds base64 of the 64-byte
libsodium secret key (seed + public key), ``id_ed25519.pub`` base64 of the public key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

# Re-exported: it lived here before moving to the pure module wire.signed_id.
from pyhbb.wire.signed_id import sign_id_pk as sign_id_pk

log = logging.getLogger(__name__)

SECRET_FILE = "id_ed25519"
PUBLIC_FILE = "id_ed25519.pub"
MAX_GENERATE_TRIES = 300


class KeyError_(Exception):
    """A key file or key value that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class ServerKey:
    """What ``-k`` resolved to: the licence key to enforce and the key to sign with."""

    enforced: str
    """Clients' ``licence_key`` must equal this when non-empty."""
    signing: SigningKey | None
    """Signs IdPk and KeyExchange; ``None`` means clients get unsigned (insecure) answers."""

    @property
    def public_b64(self) -> str:
        if self.signing is None:
            return ""
        return base64.b64encode(bytes(self.signing.verify_key)).decode()


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def signing_key_from_secret(secret: bytes) -> SigningKey:
    """Build a signing key from a 64-byte libsodium secret key, checking its halves agree.

    libsodium signs with the embedded public half, so a file whose seed does not derive
    that half would produce signatures no client can verify: refuse it instead.
    """
    if len(secret) != 64:
        raise KeyError_(f"secret key must be 64 bytes, got {len(secret)}")
    key = SigningKey(secret[:32])
    if bytes(key.verify_key) != secret[32:]:
        raise KeyError_("secret key is inconsistent: its seed does not derive its public half")
    return key


def secret_b64(key: SigningKey) -> str:
    return base64.b64encode(bytes(key) + bytes(key.verify_key)).decode()


def load_key_file(directory: Path) -> SigningKey | None:
    """Load ``id_ed25519`` from ``directory``; ``None`` if the file does not exist."""
    path = directory / SECRET_FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:  # a directory, no permission, an I/O error: say which, no traceback
        raise KeyError_(
            f"cannot read the key file {path}: {e.strerror or e}; it must be a readable "
            "file (or absent, to have a new key pair generated)"
        ) from None
    secret = _b64decode(text)
    if secret is None or len(secret) != 64:
        raise KeyError_(
            f"{path} does not hold a base64 64-byte Ed25519 secret key; "
            "fix it or move it away to have a new key pair generated"
        )
    try:
        return signing_key_from_secret(secret)
    except KeyError_ as e:
        raise KeyError_(f"{path}: {e}") from None


def generate_key_files(directory: Path) -> SigningKey:
    """Generate a key pair whose base64 public key has no ``/`` and write both files."""
    key = SigningKey.generate()
    for _ in range(MAX_GENERATE_TRIES):
        if "/" not in base64.b64encode(bytes(key.verify_key)).decode():
            break
        key = SigningKey.generate()
    public = base64.b64encode(bytes(key.verify_key)).decode()
    # Write a private temp file, then hard-link it into place: the link is atomic and
    # fails if another process (a co-started hbbs/hbbr) won the race, so readers never
    # see a half-written secret and the .pub file always matches the winning secret.
    tmp = directory / f".{SECRET_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secret_b64(key))
        os.link(tmp, directory / SECRET_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    (directory / PUBLIC_FILE).write_text(public, encoding="ascii")
    log.info("generated a new key pair in %s (public key %s)", directory, public)
    return key


def load_or_generate(directory: Path) -> SigningKey | None:
    """Load the key files, or generate them when absent; ``None`` if writing failed."""
    key = load_key_file(directory)
    if key is not None:
        return key
    try:
        return generate_key_files(directory)
    except FileExistsError:
        # Another process (a co-started hbbr/hbbs) wrote it between our read and write.
        return load_key_file(directory)
    except OSError as e:
        log.error("cannot write key files in %s (%s); continuing without a key", directory, e)
        return None


def resolve_hbbs_key(value: str, directory: Path) -> ServerKey:
    """Resolve hbbs ``-k``/``KEY`` (default ``-``) as docs/protocol.md §5.2 prescribes."""
    secret = _b64decode(value) if value else None
    if secret is not None and len(secret) == 64:
        return ServerKey(base64.b64encode(secret[32:]).decode(), signing_key_from_secret(secret))
    if value in ("", "-", "_"):
        loaded = load_or_generate(directory)
        if loaded is None:
            return ServerKey("", None)
        public = base64.b64encode(bytes(loaded.verify_key)).decode()
        return ServerKey(public if value else "", loaded)
    return ServerKey(value, None)


def resolve_hbbr_key(value: str, directory: Path) -> str:
    """Resolve hbbr ``-k``/``KEY`` (default empty) to the licence key it enforces."""
    secret = _b64decode(value) if value else None
    if secret is not None and len(secret) == 64:
        return base64.b64encode(secret[32:]).decode()
    if value in ("-", "_"):
        key = load_or_generate(directory)
        return "" if key is None else base64.b64encode(bytes(key.verify_key)).decode()
    return value
