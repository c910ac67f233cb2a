"""The fixtures every contract test stands on, and the one a transport supplies.

A test class of the suite subclasses :class:`ContractFixtures`; a transport's own test class
subclasses the suite and overrides ``transport_config`` (a fixture returning
``(node_id, **NodeConfig fields) -> NodeConfig``) and, where it differs from the defaults, the
class attribute ``capabilities``. Nodes are built from that config and connected the way every
transport supports (``await a.connect(b.node_id, b.address)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from ...config import NodeConfig
from ...context import CallContext
from ...node import Node

#: ``transport_config(node_id, **overrides)``: the config of node ``node_id`` on the transport under
#: test; ``overrides`` are :class:`~node_comm.NodeConfig` fields (``debug=True``, ``heartbeat=...``).
ConfigFactory = Callable[..., NodeConfig]
#: ``await make_node("x", start=True, **overrides)``: a node on the transport under test.
MakeNode = Callable[..., Awaitable[Node]]

#: Safety net for waits on events that must happen (never used to synchronise).
WAIT = 5.0

#: The serializers the ``serializer`` fixture runs the serializer-parametrised tests with (they come
#: with ``node-comm-serializers``; ``numpy`` needs numpy installed).
SERIALIZERS = ("json", "pickle", "msgpack", "numpy")


@dataclass(frozen=True)
class TransportCapabilities:
    """What a transport can do where transports legitimately differ. A test that needs a capability
    the transport declares it lacks is skipped with the capability's name as the reason."""

    #: The transport honours ``TransportHost.reading_paused``: it stops reading one peer's link
    #: while that peer's notify handlers are all busy (the back-pressure tests). A broker that pushes
    #: to a subscription (NATS) cannot.
    pauses_reading: bool = True
    #: ``connect(node_id, None)`` finds the peer by its id, so a dial may begin before the peer has
    #: started (memory, a broker). A transport that dials addresses (gRPC) needs the peer's address,
    #: known only once it listens.
    dials_by_id: bool = False
    #: An address at which no node answers, for the connect-failure tests (``None`` when the transport
    #: dials by id: then an unknown id is what fails).
    unreachable_address: str | None = None


class ContractFixtures:
    """Fixtures of the contract suite. Override ``transport_config`` (and ``capabilities``, and
    ``node_plugins`` for a transport registered by a plugin object rather than an entry point)."""

    #: Every test is async: marked for pytest-asyncio, so strict mode runs them too.
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]
    #: What the transport under test can do; see :class:`TransportCapabilities`.
    capabilities: ClassVar[TransportCapabilities] = TransportCapabilities()
    #: Extra plugin objects for every node (``Node(..., plugins=...)``): a transport not installed
    #: through the ``node_comm`` entry point registers itself here.
    node_plugins: ClassVar[Sequence[object]] = ()

    @pytest.fixture
    def transport_config(self) -> ConfigFactory:
        """``(node_id, **overrides) -> NodeConfig`` on the transport under test: override it."""
        raise NotImplementedError(
            f"{type(self).__name__} runs the node-comm contract suite but defines no `transport_config` "
            "fixture: add one returning `(node_id, **overrides) -> NodeConfig` for your transport"
        )

    @pytest_asyncio.fixture
    async def make_node(self, transport_config: ConfigFactory) -> AsyncIterator[MakeNode]:
        """``await make_node("x", debug=True)``: a started node on the transport; stopped at teardown.
        ``start=False`` builds it without starting it."""
        made: list[Node] = []

        async def factory(node_id: str, *, start: bool = True, **overrides: Any) -> Node:
            node = Node(node_id, transport_config(node_id, **overrides), plugins=self.node_plugins)
            made.append(node)
            if start:
                await node.start()
            return node

        try:
            yield factory
        finally:
            for node in reversed(made):
                await node.stop(grace=0)

    @pytest_asyncio.fixture
    async def pair(self, make_node: MakeNode) -> tuple[Node, Node]:
        """Two started nodes ``a`` and ``b``, ``a`` connected to ``b``."""
        a = await make_node("a")
        b = await make_node("b")
        await link(a, b)
        return a, b

    @pytest.fixture(params=SERIALIZERS)
    def serializer(self, request: pytest.FixtureRequest) -> str:
        """Each serializer of :data:`SERIALIZERS` in turn (override it to run fewer)."""
        return str(request.param)


def needs(capabilities: TransportCapabilities, name: str) -> None:
    """Skip the running test unless the transport declares capability ``name``."""
    if not getattr(capabilities, name):
        pytest.skip(f"the transport declares {name}=False")


async def link(a: Node, b: Node) -> None:
    """Connect ``a`` to ``b`` as any transport allows (memory ignores the address)."""
    await a.connect(b.node_id, b.address)


def payload_for(serializer: str) -> Any:
    """A payload every serializer round-trips to an equal value."""
    return {"n": 7, "f": 0.5, "s": "héllo ✓", "l": [1, 2, 3], "nested": {"ok": True, "none": None}}


def blocking_handler(started: asyncio.Event, cancelled: asyncio.Event) -> Any:
    """A handler that sets ``started``, then waits until cancelled and sets ``cancelled``."""

    async def handler(payload: Any, ctx: CallContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends this
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return handler
