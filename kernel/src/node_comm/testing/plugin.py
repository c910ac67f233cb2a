"""The pytest plugin of node-comm (entry point ``pytest11``): fixtures for testing your handlers.

- ``node_factory``: ``await node_factory("a")`` is a started in-process node;
  ``await node_factory("b", connect_to="a")`` one already connected to ``a``; other keyword
  arguments are ``NodeConfig`` fields. Every node is stopped after the test.
- ``memory_faults``: ``memory_faults(node)`` is its memory transport, to inject faults
  (``drop_link``, ``freeze``/``thaw``, ``set_latency``).

``node_factory`` is an async fixture of pytest-asyncio, so it works in ``asyncio_mode = auto``
and in strict mode (mark the test ``@pytest.mark.asyncio`` there); it runs in the test's
function-scoped event loop. A test in a wider loop scope uses ``NodeFactory`` directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

# The contract suite's asserts report their operands like a test module's (registered before any
# test module imports it).
pytest.register_assert_rewrite("node_comm.testing.contract")

from ..node import Node  # noqa: E402
from . import NodeFactory  # noqa: E402
from . import memory_faults as _memory_faults  # noqa: E402

if TYPE_CHECKING:
    from node_comm_memory.transport import MemoryTransport

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio missing: say what to install
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["memory_faults", "node_factory"]


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def node_factory() -> AsyncIterator[NodeFactory]:
        """``await node_factory("a", connect_to=None, **NodeConfig fields)``: a started memory node;
        every node made is stopped after the test."""
        factory = NodeFactory()
        try:
            yield factory
        finally:
            await factory.stop_all()

else:  # pragma: no cover

    @pytest.fixture
    def node_factory() -> NodeFactory:
        pytest.fail("the node_factory fixture needs pytest-asyncio: pip install pytest-asyncio", pytrace=False)


@pytest.fixture
def memory_faults() -> Callable[[Node], MemoryTransport]:
    """``memory_faults(node)``: the node's memory transport, for ``drop_link(peer)``, ``freeze()``,
    ``thaw()`` and ``set_latency(seconds, peer=None)``."""
    return _memory_faults
