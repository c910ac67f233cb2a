"""Configuration dataclasses. ``load_config`` (config_loader.py) builds them from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigError
from .plugins import PluginsConfig
from .validate import check_int, check_seconds

#: Fastest heartbeat: more often than every 10 ms, pings alone keep a core busy.
MIN_HEARTBEAT_INTERVAL = 0.01
#: Most concurrent inbound calls a peer may be allowed.
MAX_CALLS_PER_PEER = 1_000_000


@dataclass
class HeartbeatConfig:
    """Transport-independent liveness: every ``interval`` seconds each peer is pinged; a peer silent
    for more than ``timeout`` seconds is disconnected and its pending calls fail at once."""

    enabled: bool = False
    interval: float = 30.0
    timeout: float = 90.0

    def __post_init__(self) -> None:
        check_seconds(
            "heartbeat.interval",
            self.interval,
            minimum=MIN_HEARTBEAT_INTERVAL,
            fix="pinging every peer more often than every 10 ms burns a core; e.g. interval: 1",
        )
        check_seconds("heartbeat.timeout", self.timeout)
        if self.timeout <= self.interval:
            raise ConfigError(
                f"heartbeat.timeout: must be greater than heartbeat.interval ({self.timeout:g} <= "
                f"{self.interval:g}); a peer would be dropped between two pings. Use e.g. "
                f"timeout: {self.interval * 3:g} (three intervals)"
            )


@dataclass(init=False)
class TransportConfig:
    """Which transport a node uses (``mode``) and the options of each transport by name.

    Sections are given as keywords named for their transport, or in ``options``:
    ``TransportConfig(mode="grpc", grpc=GrpcTransportConfig(port=50051))`` is
    ``TransportConfig(mode="grpc", options={"grpc": GrpcTransportConfig(port=50051)})``. A section
    reads back the same way: ``config.transport.grpc`` (``None`` when absent). The kernel knows no
    transport by name: each plugin declares its options type, and sections are checked against it
    when a node is built (or when YAML is loaded).
    """

    mode: str
    options: dict[str, Any]

    def __init__(self, mode: str = "memory", options: dict[str, Any] | None = None, **sections: Any) -> None:
        self.mode = mode
        self.options = dict(options or {})
        for name, section in sections.items():
            if section is not None:
                self.options[name] = section

    def section(self, name: str) -> Any:
        """The options given for transport ``name`` (``None`` when absent)."""
        return self.options.get(name)

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: a transport's section, or None.
        if name.startswith("_") or name in ("mode", "options"):
            raise AttributeError(name)
        return self.options.get(name)


@dataclass
class InterceptorConfig:
    """One entry of ``interceptors:``; builds ``factory(**options)`` of the interceptor ``name``."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PeerConfig:
    """One entry of ``peers:``: a node to connect to at start (``node-comm run`` dials each, retrying
    until it is up). ``address`` is where it listens (``host:port`` for grpc; not needed in memory)."""

    node_id: str
    address: str | None = None


@dataclass
class MethodOptions:
    """How a registered method is served: ``serializer`` is the only one it accepts;
    ``authenticated_only`` refuses callers the transport did not authenticate (PERMISSION_DENIED,
    before any byte is decoded). ``None`` (default) means on for ``pickle`` (decoding a pickle runs
    code of the sender's choosing), off for every other serializer."""

    serializer: str = "json"
    authenticated_only: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.serializer, str) or not self.serializer:
            raise ConfigError(f"MethodOptions.serializer: expected a serializer name, got {self.serializer!r}")
        if self.authenticated_only is not None and not isinstance(self.authenticated_only, bool):
            raise ConfigError(
                f"MethodOptions.authenticated_only: expected true, false or null, got {self.authenticated_only!r}"
            )


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
        check_int("decode_limits.max_depth", self.max_depth, minimum=1, maximum=100_000)
        check_int("decode_limits.max_containers", self.max_containers, minimum=1, maximum=1 << 40)


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
    #: Payloads of this many bytes or more are serialized and deserialized in a worker thread, off
    #: the event loop (0: every payload); smaller ones inline. For encoding, the size is estimated.
    offload_threshold: int = 1024 * 1024
    #: Keep freed large buffers in the process for the next message (glibc: buffers under 32 MiB
    #: from the heap, trimmed past 64 MiB free) instead of fresh pages each time: much less CPU for
    #: large transfers and broadcasts, a higher peak RSS. Process-wide, set by the first node that
    #: starts with it; off by default (malloc is left alone).
    reuse_freed_memory: bool = False
    decode_limits: DecodeLimits = field(default_factory=DecodeLimits)
    #: Threads that run plain ``def`` handlers (the node's own pool); when all are busy a warning
    #: names the handlers holding them.
    handler_threads: int = 32
    #: Seconds the event loop may be blocked before a warning names the handler blocking it (an
    #: ``async def`` handler calling something blocking); ``null`` turns the watchdog off.
    loop_block_warning: float | None = 1.0
    transport: TransportConfig = field(default_factory=TransportConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    interceptors: list[InterceptorConfig] = field(default_factory=list)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    #: Nodes to connect to at start (``node-comm run``); ``Node`` itself does not dial them.
    peers: list[PeerConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ConfigError(f"node_id: expected a non-empty string, got {self.node_id!r}")
        check_seconds(
            "default_timeout",
            self.default_timeout,
            allow_none=True,
            fix="use null for no timeout, or a number of seconds",
        )
        check_seconds("connect_timeout", self.connect_timeout)
        check_seconds("shutdown_grace", self.shutdown_grace, minimum=0)
        check_int(
            "max_concurrent_calls_per_peer",
            self.max_concurrent_calls_per_peer,
            minimum=1,
            maximum=MAX_CALLS_PER_PEER,
        )
        check_int(
            "max_concurrent_notifies_per_peer",
            self.max_concurrent_notifies_per_peer,
            minimum=1,
            maximum=MAX_CALLS_PER_PEER,
        )
        check_int(
            "offload_threshold",
            self.offload_threshold,
            minimum=0,
            maximum=1 << 40,
            fix="a number of bytes, e.g. 1048576",
        )
        check_int("handler_threads", self.handler_threads, minimum=1, maximum=1024)
        check_seconds(
            "loop_block_warning",
            self.loop_block_warning,
            minimum=0.05,
            allow_none=True,
            fix="seconds, or null to turn the warning off",
        )
        if not isinstance(self.decode_limits, DecodeLimits):
            raise ConfigError(f"decode_limits: expected a DecodeLimits, got {self.decode_limits!r}")
        self._check_peers()

    def _check_peers(self) -> None:
        seen: set[str] = set()
        for i, peer in enumerate(self.peers):
            if not isinstance(peer, PeerConfig):
                raise ConfigError(f"peers[{i}]: expected a PeerConfig (node_id, address), got {peer!r}")
            if not isinstance(peer.node_id, str) or not peer.node_id:
                raise ConfigError(f"peers[{i}].node_id: expected a non-empty string, got {peer.node_id!r}")
            if peer.address is not None and (not isinstance(peer.address, str) or not peer.address.strip()):
                raise ConfigError(f"peers[{i}].address: expected 'host:port' or null, got {peer.address!r}")
            if peer.node_id == self.node_id:
                raise ConfigError(
                    f"peers[{i}].node_id: {peer.node_id!r} is this node's own id; a node cannot connect to itself"
                )
            if peer.node_id in seen:
                raise ConfigError(f"peers[{i}].node_id: {peer.node_id!r} is listed twice; keep one entry")
            seen.add(peer.node_id)
