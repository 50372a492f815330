"""DB_URL values: plain paths (official), sqlite: URLs and ?parameters (tolerated)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyhbb.store.base import StoreError
from pyhbb.store.schema import db_path_from_url
from tests.store.conftest import PK, new_guid, peer_store

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("db_v2.sqlite3", "db_v2.sqlite3"),
        ("./data/db_v2.sqlite3", "./data/db_v2.sqlite3"),
        ("/var/lib/hbbs/db.sqlite3", "/var/lib/hbbs/db.sqlite3"),
        ("", "./db_v2.sqlite3"),
        ("sqlite:db.sqlite3", "db.sqlite3"),
        ("sqlite://db.sqlite3", "db.sqlite3"),
        ("sqlite:///abs/db.sqlite3", "/abs/db.sqlite3"),
        ("SQLite://db.sqlite3", "db.sqlite3"),
        ("db.sqlite3?mode=rwc", "db.sqlite3"),
        ("sqlite://./db.sqlite3?mode=ro&cache=shared", "./db.sqlite3"),
    ],
)
def test_db_path_from_url(url: str, path: str) -> None:
    assert db_path_from_url(url) == path


@pytest.mark.parametrize("url", [":memory:", "sqlite::memory:", "sqlite://?mode=memory"])
def test_urls_without_a_file_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        db_path_from_url(url)


@pytest.mark.parametrize("form", ["{}", "sqlite:{}", "sqlite://{}?mode=rwc"])
async def test_missing_file_is_created_with_the_schema(tmp_path: Path, form: str) -> None:
    path = tmp_path / "new.sqlite3"
    async with peer_store(form.format(path)) as store:
        await store.insert(new_guid(), "123456", b"u", PK, "192.0.2.1")
    assert path.exists()
    assert not (tmp_path / "new.sqlite3?mode=rwc").exists()


async def test_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with peer_store():
        pass
    assert (tmp_path / "db_v2.sqlite3").exists()
    assert os.getcwd() == str(tmp_path)


async def test_empty_file_gets_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.touch()
    async with peer_store(str(path)) as store:
        assert await store.count() == 0
