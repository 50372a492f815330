"""Key files, -k semantics and IdPk signatures, with the vectors of docs/protocol.md §14.4."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from pyhbb.wire import keys

SEED = bytes(range(32))
SECRET_B64 = (
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
)
PUBLIC_B64 = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
IDPK_HEX = "0a093132333435363738391220" + "11" * 32
SIG_HEX = (
    "f4cb34dbfc530c3fb06ecbfb8dad3b63d15a054f282a7cd8e1551aa25b8bebc6"
    "421a5c9ffaca8cc33b478c1839899497a8fc46c42da3820558ef2e949e6d1906"
)


def test_secret_b64_vector() -> None:
    key = keys.signing_key_from_secret(base64.b64decode(SECRET_B64))
    assert bytes(key) == SEED
    assert keys.secret_b64(key) == SECRET_B64


def test_signed_idpk_vector() -> None:
    key = keys.signing_key_from_secret(base64.b64decode(SECRET_B64))
    signed = keys.sign_id_pk(key, "123456789", b"\x11" * 32)
    assert signed.hex() == SIG_HEX + IDPK_HEX
    assert VerifyKey(base64.b64decode(PUBLIC_B64)).verify(signed).hex() == IDPK_HEX


def test_load_existing_files(tmp_path: Path) -> None:
    (tmp_path / "id_ed25519").write_text(SECRET_B64 + "\n")
    k = keys.resolve_hbbs_key("-", tmp_path)
    assert k.enforced == PUBLIC_B64
    assert k.signing is not None and bytes(k.signing) == SEED
    assert not (tmp_path / "id_ed25519.pub").exists()  # loading never writes


def test_generate_when_missing(tmp_path: Path) -> None:
    k = keys.resolve_hbbs_key("_", tmp_path)
    pub = (tmp_path / "id_ed25519.pub").read_text()
    secret = (tmp_path / "id_ed25519").read_text()
    assert len(pub) == 44 and len(secret) == 88 and "\n" not in secret
    assert "/" not in pub
    assert k.enforced == pub == k.public_b64
    assert base64.b64decode(secret)[32:] == base64.b64decode(pub)
    assert os.stat(tmp_path / "id_ed25519").st_mode & 0o077 == 0
    # A second start loads the same key.
    assert keys.resolve_hbbs_key("-", tmp_path).enforced == pub


def test_empty_key_loads_for_signing_but_enforces_nothing(tmp_path: Path) -> None:
    (tmp_path / "id_ed25519").write_text(SECRET_B64)
    k = keys.resolve_hbbs_key("", tmp_path)
    assert k.enforced == ""
    assert k.signing is not None


def test_secret_key_value(tmp_path: Path) -> None:
    k = keys.resolve_hbbs_key(SECRET_B64, tmp_path)
    assert k.enforced == PUBLIC_B64 and k.signing is not None
    assert not (tmp_path / "id_ed25519").exists()


def test_public_key_value_means_no_signing(tmp_path: Path) -> None:
    k = keys.resolve_hbbs_key(PUBLIC_B64, tmp_path)
    assert k.enforced == PUBLIC_B64 and k.signing is None
    assert not (tmp_path / "id_ed25519").exists()


def test_bad_file_is_refused_with_advice(tmp_path: Path) -> None:
    (tmp_path / "id_ed25519").write_text("not base64!")
    with pytest.raises(keys.KeyError_, match="move it away"):
        keys.resolve_hbbs_key("-", tmp_path)


def test_inconsistent_halves_refused(tmp_path: Path) -> None:
    raw = bytearray(base64.b64decode(SECRET_B64))
    raw[40] ^= 1
    (tmp_path / "id_ed25519").write_text(base64.b64encode(bytes(raw)).decode())
    with pytest.raises(keys.KeyError_, match="inconsistent"):
        keys.resolve_hbbs_key("-", tmp_path)


def test_hbbr_key_semantics(tmp_path: Path) -> None:
    assert keys.resolve_hbbr_key("", tmp_path) == ""
    assert not (tmp_path / "id_ed25519").exists()
    assert keys.resolve_hbbr_key(SECRET_B64, tmp_path) == PUBLIC_B64
    assert keys.resolve_hbbr_key("verbatim", tmp_path) == "verbatim"
    (tmp_path / "id_ed25519").write_text(SECRET_B64)
    assert keys.resolve_hbbr_key("-", tmp_path) == PUBLIC_B64


def test_unwritable_directory_continues_without_key(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    k = keys.resolve_hbbs_key("-", missing)
    assert k.signing is None and k.enforced == ""
