"""Regenerate the protobuf modules in src/pyhbb/wire/ from src/pyhbb/wire/proto/*.proto.

Usage: python tools/gen_proto.py [OUT_DIR]   (default: src/pyhbb/wire)
Needs grpcio-tools (pinned in the dev extra) so that every machine writes the same bytes;
tests/unit/test_proto_fresh.py fails when the committed modules are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "src" / "pyhbb" / "wire" / "proto"
PROTOS = ("rendezvous.proto", "message.proto")


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in PROTOS:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(PROTO_DIR / name),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {name}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src" / "pyhbb" / "wire")
