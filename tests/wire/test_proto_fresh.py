"""The committed *_pb2 modules are exactly what the pinned protoc makes of our .proto files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIRE = ROOT / "src" / "pyhbb" / "wire"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is missing: install the dev extra (scripts/test.sh does)")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_proto
    finally:
        sys.path.pop(0)
    gen_proto.generate(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(p.name for p in WIRE.glob("*_pb2.py*"))
    for name in names:
        assert (tmp_path / name).read_bytes() == (WIRE / name).read_bytes(), (
            f"{name} is stale: run `python tools/gen_proto.py` and commit the result"
        )
