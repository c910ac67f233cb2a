"""Helpers for testing code built on node-comm, and the pytest plugin behind them.

Installing node-comm gives every pytest run the fixtures of :mod:`node_comm.testing.plugin`
(entry point ``pytest11``): ``node_factory`` and ``memory_faults``. This module itself never
imports pytest, so the helpers also work in any other test runner::

    async with NodeFactory() as make:
        a = await make("a")
        b = await make("b", connect_to="a")

The transport contract suite is :mod:`node_comm.testing.contract` (it imports pytest): subclass its
``TransportContract`` and override the ``transport_config`` fixture to run it against a transport.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..config import NodeConfig, TransportConfig
from ..exceptions import ConfigError
from ..node import Node

if TYPE_CHECKING:
    from node_comm_memory.transport import MemoryTransport

__all__ = ["NodeFactory", "memory_faults"]

#: ``shutdown_grace`` of the nodes a factory makes unless given: a test should not wait 5 s for a
#: handler it left hanging.
TEST_SHUTDOWN_GRACE = 0.5


class NodeFactory:
    """Makes started nodes (in-process ``memory`` transport unless ``transport=`` says otherwise)
    and stops every one of them in :meth:`stop_all` (the ``node_factory`` fixture does it after the
    test). Use it as ``await factory("a")``, or ``async with NodeFactory() as make:`` outside pytest."""

    def __init__(self) -> None:
        #: The nodes made so far, by id, in order.
        self.nodes: dict[str, Node] = {}

    async def __call__(
        self,
        node_id: str,
        *,
        connect_to: str | Iterable[str] | None = None,
        plugins: Iterable[object] = (),
        **config: Any,
    ) -> Node:
        """A started node ``node_id``, connected to each node of ``connect_to`` (an id or ids).

        Other keyword arguments are :class:`~node_comm.NodeConfig` fields (``default_timeout=2``,
        ``heartbeat=HeartbeatConfig(...)``); ``transport`` may be a transport name (``"grpc"``
        listens on a free loopback port). ``plugins``
        are extra plugin objects, as for ``Node(..., plugins=...)``.
        """
        node = Node(node_id, self._config(node_id, config), plugins=plugins)
        await node.start()
        self.nodes[node_id] = node
        targets = [connect_to] if isinstance(connect_to, str) else list(connect_to or ())
        for target in targets:
            other = self.nodes.get(target)
            await node.connect(target, other.address if other is not None else None)
        return node

    @staticmethod
    def _config(node_id: str, config: dict[str, Any]) -> NodeConfig:
        fields = {f.name for f in dataclasses.fields(NodeConfig)} - {"node_id"}
        for key in config:
            if key not in fields:
                close = difflib.get_close_matches(key, sorted(fields), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"node_factory({node_id!r}, {key}=...): {key!r} is not a NodeConfig field; {hint}"
                    f"fields: {', '.join(sorted(fields))}"
                )
        if isinstance(config.get("transport"), str):
            config["transport"] = _transport(config["transport"])
        config.setdefault("shutdown_grace", TEST_SHUTDOWN_GRACE)
        return NodeConfig(node_id=node_id, **config)

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    async def stop_all(self) -> None:
        """Stop every node made, the last made first; a node that fails to stop does not keep the
        others running (the first error is raised after all were stopped)."""
        errors: list[BaseException] = []
        for node in reversed(list(self.nodes.values())):
            try:
                await node.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> NodeFactory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()


def _transport(mode: str) -> TransportConfig:
    """``transport="grpc"`` listens on a free loopback port; other names take their defaults."""
    if mode == "grpc":
        from node_comm import GrpcTransportConfig

        return TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=0))
    return TransportConfig(mode=mode)


def memory_faults(node: Node) -> MemoryTransport:
    """The memory transport of ``node``, for fault injection: ``set_latency(seconds, peer=None)``,
    ``drop_link(peer)``, ``freeze()`` / ``thaw()``. A :class:`ConfigError` for other transports."""
    transport = node.transport
    if node.config.transport.mode != "memory" or not hasattr(transport, "drop_link"):
        raise ConfigError(
            f"memory_faults: node {node.node_id!r} uses transport {node.config.transport.mode!r}; "
            "fault injection needs the memory transport (the default of node_factory)"
        )
    return transport  # type: ignore[return-value]
