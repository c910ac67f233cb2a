"""Configuration dataclasses. ``load_config`` (config_loader.py) builds them from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .plugins import PluginsConfig


@dataclass
class HeartbeatConfig:
    """Transport-independent liveness: every ``interval`` seconds each peer is pinged; a peer silent
    for more than ``timeout`` seconds is disconnected and its pending calls fail at once."""

    enabled: bool = False
    interval: float = 30.0
    timeout: float = 90.0


@dataclass
class MemoryTransportConfig:
    """Options of the ``memory`` transport (YAML ``transport.memory``)."""

    #: Seconds added to every message this node sends (simulated network latency).
    latency: float = 0.0


@dataclass
class TransportConfig:
    """Which transport a node uses (``mode``) and the options of each transport by name.

    ``grpc`` takes a :class:`node_comm.GrpcTransportConfig`; other transports' sections go in
    ``options`` keyed by transport name (``options={"zmq": {...}}``).
    """

    mode: str = "memory"
    grpc: Any = None
    memory: MemoryTransportConfig | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """The options given for transport ``name`` (``None`` when absent)."""
        if name == "grpc" and self.grpc is not None:
            return self.grpc
        if name == "memory" and self.memory is not None:
            return self.memory
        return self.options.get(name)


@dataclass
class InterceptorConfig:
    """One entry of ``interceptors:``; builds ``factory(**options)`` of the interceptor ``name``."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodOptions:
    """How a registered method is served: ``serializer`` is the only one it accepts."""

    serializer: str = "json"


@dataclass
class NodeConfig:
    """Everything a :class:`~node_comm.Node` needs; every field but ``node_id`` has a default."""

    node_id: str
    debug: bool = False
    default_timeout: float | None = 30.0
    connect_timeout: float = 10.0
    #: Seconds ``stop()`` lets in-flight inbound calls finish before cancelling them.
    shutdown_grace: float = 5.0
    #: Concurrent inbound calls allowed per peer; more get ``RESOURCE_EXHAUSTED``.
    max_concurrent_calls_per_peer: int = 4096
    transport: TransportConfig = field(default_factory=TransportConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    interceptors: list[InterceptorConfig] = field(default_factory=list)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
