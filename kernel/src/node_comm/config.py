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


def _check_int(path: str, value: object, minimum: int, fix: str = "") -> None:
    """Raise a :class:`ConfigError` naming ``path`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: expected an integer >= {minimum}, got {value!r}{'; ' + fix if fix else ''}")


@dataclass
class DecodeLimits:
    """Bounds on decoding a peer's payload (YAML ``decode_limits``), so a small hostile payload
    cannot decode into gigabytes or stall the node. A payload past them fails that call with
    ``RESOURCE_EXHAUSTED`` before it is decoded. Serializers apply them where they can blow up
    (``json``, ``msgpack``); see :meth:`node_comm.Serializer.deserialize_bounded`."""

    #: Deepest nesting of lists/dicts (arrays/maps) accepted.
    max_depth: int = 128
    #: Most lists/dicts (arrays/maps) one payload may hold; JSON counts its ``[`` and ``{`` bytes,
    #: those inside strings included.
    max_containers: int = 1_000_000

    def __post_init__(self) -> None:
        _check_int("decode_limits.max_depth", self.max_depth, 1)
        _check_int("decode_limits.max_containers", self.max_containers, 1)


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
    #: Payloads of this many bytes or more are serialized and deserialized in a worker thread, off
    #: the event loop (0: every payload); smaller ones inline. For encoding, the size is estimated.
    offload_threshold: int = 1024 * 1024
    decode_limits: DecodeLimits = field(default_factory=DecodeLimits)
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
        n = self.max_concurrent_calls_per_peer
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"max_concurrent_calls_per_peer: expected an integer >= 1, got {n!r}")
        _check_int("offload_threshold", self.offload_threshold, 0, "a number of bytes, e.g. 1048576")
        if not isinstance(self.decode_limits, DecodeLimits):
            raise ConfigError(f"decode_limits: expected a DecodeLimits, got {self.decode_limits!r}")
