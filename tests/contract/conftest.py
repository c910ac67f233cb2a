"""Helpers of the contract suite: build nodes on the parametrised ``transport`` and connect them the
way every transport supports (``await a.connect(b.node_id, b.address)``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from node_comm import CallContext, Node
from tests.conftest import make_config

NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(transport: str) -> AsyncIterator[NodeFactory]:
    """``await make_node("x", debug=True)``: a started node on ``transport``; stopped at teardown."""
    made: list[Node] = []

    async def factory(node_id: str, *, start: bool = True, **overrides: Any) -> Node:
        node = Node(node_id, make_config(transport, node_id, **overrides))
        made.append(node)
        if start:
            await node.start()
        return node

    try:
        yield factory
    finally:
        for node in reversed(made):
            await node.stop(grace=0)


async def link(a: Node, b: Node) -> None:
    """Connect ``a`` to ``b`` as any transport allows (memory ignores the address)."""
    await a.connect(b.node_id, b.address)


#: Safety net for waits on events that must happen (never used to synchronise).
WAIT = 5.0


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
