"""A memory-only node does not import grpc: the grpc plugin's entry point registers a factory that
imports the transport (and grpc) only when a node is built with ``transport.mode: grpc``."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import node_comm
node = node_comm.Node("a")
assert "grpc" in node._registries.transports, "the grpc plugin must still be discovered"
print(",".join(sorted(m for m in sys.modules if m == "grpc" or m.startswith(("grpc.", "grpc_")))))
"""


def test_memory_node_imports_no_grpc() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert not [m for m in imported if m.split(".")[0] in ("grpc", "grpc_status", "grpc_health")]


def test_grpc_node_imports_grpc_when_built() -> None:
    probe = """
import sys
import node_comm
from node_comm import GrpcTransportConfig, NodeConfig, TransportConfig
config = NodeConfig(node_id="a", transport=TransportConfig(mode="grpc", grpc=GrpcTransportConfig(port=0)))
node = node_comm.Node("a", config)
assert type(node.transport).__name__ == "GrpcTransport"
assert "grpc" in sys.modules
"""
    subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
