"""Cluster fixtures: a real NATS cluster and three hbbs nodes, stopped by PID however the
test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import NATS_SERVER, Cluster, start_cluster


def _require_engine() -> None:
    if not NATS_SERVER.exists():
        pytest.fail(f"{NATS_SERVER} is missing: install the cluster extra (scripts/bootstrap.sh)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster shared by a module's tests (each test uses its own peer ids)."""
    _require_engine()
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster for one test that kills parts of it."""
    _require_engine()
    c = start_cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.stop()
