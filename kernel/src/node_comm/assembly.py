"""The one step that turns a :class:`NodeConfig` (plus plugins given in code) into a node's runtime
parts: the plugin registries, the transport, the node's serializers and its interceptor chain.

``load_config`` only reads and checks data; ``Node()`` calls :func:`assemble`. Discovery is cached
per process (see :func:`node_comm.plugins.discover`), so assembling many nodes imports and calls the
installed plugins once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .config import NodeConfig
from .config_loader import build_interceptor, options_for_transport
from .exceptions import ConfigError
from .interceptor import Interceptor, InterceptorChain
from .plugins import Registries, discover
from .registry import SerializerRegistry
from .transport import Transport


@dataclass
class NodeParts:
    """What a node is built from."""

    registries: Registries
    transport: Transport
    serializers: SerializerRegistry
    interceptors: InterceptorChain


def assemble(config: NodeConfig, plugins: Iterable[object] = ()) -> NodeParts:
    """Build the runtime parts ``config`` describes. Every problem is a :class:`ConfigError` naming
    the key path (``transport.grpc.port``, ``interceptors[1].options.token``). ``config`` is not
    changed."""
    registries = discover(config.plugins, plugins)
    interceptors = [build_checked_interceptor(registries, config, i) for i in range(len(config.interceptors))]
    return NodeParts(
        registries=registries,
        transport=build_transport(registries, config),
        serializers=SerializerRegistry.of(registries.serializers),
        interceptors=InterceptorChain(interceptors),
    )


def build_transport(registries: Registries, config: NodeConfig) -> Transport:
    """The transport ``config.transport.mode`` names, given its section checked against the
    options type its plugin declared."""
    mode = config.transport.mode
    entry = registries.transports.get(mode)
    options = options_for_transport(entry, config.transport.section(mode), f"transport.{mode}")
    transport = entry(options)
    if not isinstance(transport, Transport):
        raise ConfigError(f"transport {mode!r} factory returned {type(transport).__name__}, not a node_comm Transport")
    return transport


def build_checked_interceptor(registries: Registries, config: NodeConfig, index: int) -> Interceptor:
    """Entry ``index`` of ``config.interceptors``, built and checked to be an :class:`Interceptor`."""
    spec = config.interceptors[index]
    interceptor = build_interceptor(registries, spec, index)
    if not isinstance(interceptor, Interceptor):
        raise ConfigError(
            f"interceptor {spec.name!r} factory returned {type(interceptor).__name__}, not a node_comm.Interceptor"
        )
    return interceptor
