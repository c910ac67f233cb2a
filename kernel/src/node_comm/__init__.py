"""node-comm: any node calls any other node's methods, over a transport chosen by name.

The public API lives here. ``GrpcTransportConfig`` and ``MemoryTransportConfig`` belong to their
transport plugins and are re-exported lazily, so importing ``node_comm`` imports no plugin.
"""

from __future__ import annotations

from typing import Any

from .config import (
    DecodeLimits,
    HeartbeatConfig,
    InterceptorConfig,
    MethodOptions,
    NodeConfig,
    PeerConfig,
    TransportConfig,
)
from .config_loader import config_from_dict, load_config
from .context import CallContext
from .disconnects import DisconnectKind, DisconnectReason
from .exceptions import (
    CallRejectedError,
    CallTimeoutError,
    ConfigError,
    ConnectFailedError,
    ConnectionLostError,
    ErrorCode,
    NodeCommError,
    NodeNotConnectedError,
    NodeNotStartedError,
    PayloadTooLargeError,
    PeersNotConnectedError,
    RemoteExecutionError,
    SerializationError,
)
from .hookspecs import hookimpl
from .interceptor import Interceptor, InterceptorChain
from .message import ErrorInfo, Message, MessageType
from .node import Node
from .plugins import PluginsConfig
from .serializer import Serializer, SerializerRegistry
from .transport import Transport, TransportHost

__version__ = "0.1.0"

__all__ = [
    "CallContext",
    "CallRejectedError",
    "CallTimeoutError",
    "ConfigError",
    "ConnectFailedError",
    "ConnectionLostError",
    "DecodeLimits",
    "DisconnectKind",
    "DisconnectReason",
    "ErrorCode",
    "ErrorInfo",
    "GrpcTransportConfig",
    "HeartbeatConfig",
    "Interceptor",
    "InterceptorChain",
    "InterceptorConfig",
    "MemoryTransportConfig",
    "Message",
    "MessageType",
    "MethodOptions",
    "Node",
    "NodeCommError",
    "NodeConfig",
    "NodeNotConnectedError",
    "NodeNotStartedError",
    "PayloadTooLargeError",
    "PeerConfig",
    "PeersNotConnectedError",
    "PluginsConfig",
    "RemoteExecutionError",
    "SerializationError",
    "Serializer",
    "SerializerRegistry",
    "Transport",
    "TransportConfig",
    "TransportHost",
    "config_from_dict",
    "hookimpl",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name == "GrpcTransportConfig":
        try:
            from node_comm_grpc.config import GrpcTransportConfig
        except ImportError as exc:
            raise ImportError(
                "GrpcTransportConfig comes with the gRPC transport, which is not installed; "
                "install it with `pip install node-comm-grpc` (or `pip install 'node-comm[grpc]'`)"
            ) from exc
        return GrpcTransportConfig
    if name == "MemoryTransportConfig":
        try:
            from node_comm_memory.config import MemoryTransportConfig
        except ImportError as exc:
            raise ImportError(
                "MemoryTransportConfig comes with the memory transport, which is not installed; "
                "install it with `pip install node-comm-memory`"
            ) from exc
        return MemoryTransportConfig
    raise AttributeError(f"module 'node_comm' has no attribute {name!r}")
