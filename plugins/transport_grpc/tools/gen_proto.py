"""Regenerate ``node_comm_pb2.py`` (and its ``.pyi``) from ``node_comm.proto``.

Usage: ``python plugins/transport_grpc/tools/gen_proto.py [OUT_DIR]`` (default: next to the .proto).
The generated files are committed; ``tests/grpc/test_proto.py`` regenerates into a temporary
directory and fails when they differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent.parent / "src" / "node_comm_grpc" / "proto"
PROTO = "node_comm.proto"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on the .proto, writing into ``out_dir``; returns the files."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO_DIR / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return [out_dir / "node_comm_pb2.py", out_dir / "node_comm_pb2.pyi"]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR
    for path in generate(target):
        print(f"wrote {path}")
