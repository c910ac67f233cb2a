"""Configuration dataclasses. ``load_config`` (config_loader.py) builds them from YAML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigError
from .plugins import PluginsConfig


def _check_positive(path: str, value: float | None, *, allow_zero: bool = False, fix: str = "") -> None:
    """Raise a :class:`ConfigError` naming ``path`` unless ``value`` is a finite number > 0 (>= 0)."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        want = "a number >= 0" if allow_zero else "a number > 0"
        raise ConfigError(f"{path}: expected {want}, got {value!r}{'; ' + fix if fix else ''}")


@dataclass
class HeartbeatConfig:
    """Transport-independent liveness: every ``interval`` seconds each peer is pinged; a peer silent
    for more than ``timeout`` seconds is disconnected and its pending calls fail at once."""

    enabled: bool = False
    interval: float = 30.0
    timeout: float = 90.0

    def __post_init__(self) -> None:
        _check_positive("heartbeat.interval", self.interval)
        _check_positive("heartbeat.timeout", self.timeout)
        if self.timeout <= self.interval:
            raise ConfigError(
                f"heartbeat.timeout: must be greater than heartbeat.interval ({self.timeout:g} <= "
                f"{self.interval:g}); a peer would be dropped between two pings. Use e.g. "
                f"timeout: {self.interval * 3:g} (three intervals)"
            )


@dataclass
class MemoryTransportConfig:
    """Options of the ``memory`` transport (YAML ``transport.memory``)."""

    #: Seconds added to every message this node sends (simulated network latency).
    latency: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("transport.memory.latency", self.latency, allow_zero=True)


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

    def __post_init__(self) -> None:
        if not isinstance(self.serializer, str) or not self.serializer:
            raise ConfigError(
                f"MethodOptions.serializer: expected a serializer name, got {self.serializer!r}"
            )


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
    #: Notify handlers run at once per peer; at the cap the node stops reading that peer's
    #: messages until one finishes (back-pressure: nothing is dropped).
    max_concurrent_notifies_per_peer: int = 1024
    transport: TransportConfig = field(default_factory=TransportConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    interceptors: list[InterceptorConfig] = field(default_factory=list)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ConfigError(f"node_id: expected a non-empty string, got {self.node_id!r}")
        _check_positive(
            "default_timeout", self.default_timeout, fix="use null for no timeout, or a number of seconds"
        )
        _check_positive("connect_timeout", self.connect_timeout)
        _check_positive("shutdown_grace", self.shutdown_grace, allow_zero=True)
        for key in ("max_concurrent_calls_per_peer", "max_concurrent_notifies_per_peer"):
            n = getattr(self, key)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"{key}: expected an integer >= 1, got {n!r}")
