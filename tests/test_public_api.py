"""The public API of ARCHITECTURE.md, importable from ``node_comm``, and the kernel's independence
from gRPC."""

from __future__ import annotations

import subprocess
import sys

import pytest

import node_comm

PUBLIC = [
    "Node",
    "NodeConfig",
    "TransportConfig",
    "GrpcTransportConfig",
    "HeartbeatConfig",
    "MethodOptions",
    "load_config",
    "Message",
    "Serializer",
    "Interceptor",
    "hookimpl",
    "NodeCommError",
    "NodeNotConnectedError",
    "CallTimeoutError",
    "RemoteExecutionError",
    "ConfigError",
    "SerializationError",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_importable(name: str) -> None:
    assert getattr(node_comm, name) is not None


@pytest.mark.parametrize(
    "name", ["NodeNotConnectedError", "CallTimeoutError", "RemoteExecutionError", "ConfigError", "SerializationError"]
)
def test_every_error_is_a_node_comm_error(name: str) -> None:
    assert issubclass(getattr(node_comm, name), node_comm.NodeCommError)


def test_importing_the_kernel_imports_no_grpc_and_no_plugin() -> None:
    code = (
        "import sys, node_comm\n"
        "loaded = [m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'node_comm_'))]\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_grpc_config_import_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "node_comm_grpc", None)  # as if node-comm-grpc were not installed
    monkeypatch.delitem(sys.modules, "node_comm_grpc.config", raising=False)
    with pytest.raises(ImportError, match="pip install node-comm-grpc"):
        from node_comm import GrpcTransportConfig  # noqa: F401


def test_grpc_config_comes_from_the_grpc_plugin_without_importing_grpc() -> None:
    code = (
        "import sys\n"
        "from node_comm import GrpcTransportConfig\n"
        "print(GrpcTransportConfig.__module__, 'grpc' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["node_comm_grpc.config", "False"]
