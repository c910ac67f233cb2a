"""An inbound call's slot (``max_concurrent_calls_per_peer``) is freed however the call ends,
including a CANCEL that arrives before its handler task has run at all (over gRPC a REQUEST and
its CANCEL often arrive in one batch): honest callers with short timeouts must never leak slots."""

from __future__ import annotations

import asyncio
from typing import Any

from node_comm import CallContext, Message, MessageType
from tests.contract.conftest import WAIT, NodeFactory, link


async def test_cancel_before_the_handler_starts_frees_its_slot(make_node: NodeFactory) -> None:
    a = await make_node("a")
    b = await make_node("b", max_concurrent_calls_per_peer=2)
    ran: list[Any] = []

    async def echo(payload: Any, ctx: CallContext) -> Any:
        ran.append(payload)
        return payload

    b.register("echo", echo)
    await link(a, b)
    host = b.transport.host
    # What the transport hands the node when a REQUEST and its CANCEL come in one read: both are
    # delivered before the handler's task gets its first step.
    for i in range(10):
        call_id = 1_000_000 + i
        host.deliver(Message(call_id, MessageType.REQUEST, "a", "b", "echo", b"0", "json"))
        host.deliver(Message(call_id, MessageType.CANCEL, "a", "b"))
    # A cancelled task is done after its next step and its slot freed by its done callback: give
    # the loop those two turns (no wall-clock wait), then every slot is free again: two concurrent
    # calls (the limit) both succeed.
    for _ in range(2):
        await asyncio.sleep(0)
    results = await asyncio.wait_for(
        asyncio.gather(a.call("b", "echo", 1), a.call("b", "echo", 2)), WAIT
    )
    assert results == [1, 2]
    assert ran == [1, 2]  # the cancelled requests never ran


async def test_a_burst_of_short_timeouts_leaves_no_slot_behind(make_node: NodeFactory) -> None:
    a = await make_node("a")
    b = await make_node("b", max_concurrent_calls_per_peer=8)
    release = asyncio.Event()

    async def slow(payload: Any, ctx: CallContext) -> Any:
        await release.wait()
        return payload

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    b.register("slow", slow)
    b.register("echo", echo)
    await link(a, b)
    for _ in range(5):
        outcomes = await asyncio.gather(
            *(a.call("b", "slow", i, timeout=0.005) for i in range(8)), return_exceptions=True
        )
        assert all(isinstance(o, Exception) for o in outcomes)
    assert await a.call("b", "echo", "still served", timeout=WAIT) == "still served"
