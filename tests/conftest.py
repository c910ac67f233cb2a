"""Shared fixtures. ``TRANSPORTS`` lists the transports the contract suite runs against; a third
party's transport can reuse ``tests/contract`` by adding its name and a ``make_config`` branch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from node_comm import Node, NodeConfig, TransportConfig

TRANSPORTS = ["memory", "grpc"]
SERIALIZERS = ["json", "pickle", "msgpack", "numpy"]
CONTRACT_SECRET = "contract-suite-secret"


def make_config(transport: str, node_id: str, **overrides: Any) -> NodeConfig:
    """A config for ``node_id`` on ``transport`` that listens where tests can reach it."""
    if transport == "memory":
        tc = TransportConfig(mode="memory")
    elif transport == "grpc":
        from node_comm import GrpcTransportConfig

        # Authenticated peers (a shared secret), as a real deployment has: pickle methods accept
        # only authenticated callers over a network transport.
        tc = TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=0, token=CONTRACT_SECRET))
    else:
        raise ValueError(transport)
    overrides.setdefault("shutdown_grace", 0.5)
    return NodeConfig(node_id=node_id, transport=tc, **overrides)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SERIALIZERS)
def serializer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pair(transport: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two started nodes ``a`` and ``b`` on ``transport``, ``a`` connected to ``b``."""
    a = Node("a", make_config(transport, "a"))
    b = Node("b", make_config(transport, "b"))
    await a.start()
    await b.start()
    await a.connect("b", b.address)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()
