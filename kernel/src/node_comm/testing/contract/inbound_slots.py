"""An inbound call's slot (``max_concurrent_calls_per_peer``) is freed however the call ends,
including a CANCEL that arrives before its handler task has run at all (over gRPC a REQUEST and
its CANCEL often arrive in one batch): honest callers with short timeouts must never leak slots."""

from __future__ import annotations

import asyncio
from typing import Any

from node_comm import CallContext, Message, MessageType

from .fixtures import WAIT, ContractFixtures, MakeNode, link


class InboundSlotsContract(ContractFixtures):
    async def test_cancel_before_the_handler_starts_frees_its_slot(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b", max_concurrent_calls_per_peer=2)
        ran: list[Any] = []

        async def echo(payload: Any, ctx: CallContext) -> Any:
            ran.append(payload)
            return payload

        b.register("echo", echo)
        await link(a, b)
        host = b.transport.host
        call_id = 1_000_000
        for _ in range(5):
            # What the transport hands the node when REQUESTs and their CANCELs come in one read: all
            # are delivered before the handlers' tasks get their first step.
            for _ in range(2):
                call_id += 1
                host.deliver(Message(call_id, MessageType.REQUEST, "a", "b", "echo", b"0", "json"))
                host.deliver(Message(call_id, MessageType.CANCEL, "a", "b"))
            # Every slot is free again at once: two concurrent calls (the limit) both succeed.
            results = await asyncio.wait_for(asyncio.gather(a.call("b", "echo", 1), a.call("b", "echo", 2)), WAIT)
            assert list(results) == [1, 2]
        assert ran == [1, 2] * 5  # the cancelled requests never ran

    async def test_request_cancel_floods_are_bounded(self, make_node: MakeNode) -> None:
        """Cancelled calls still finishing count too: a peer cannot grow tasks with REQUEST+CANCEL."""
        a = await make_node("a")
        b = await make_node("b", max_concurrent_calls_per_peer=4)
        b.register("echo", lambda payload, ctx: payload)
        await link(a, b)
        host = b.transport.host
        for call_id in range(1_000_000, 1_001_000):
            host.deliver(Message(call_id, MessageType.REQUEST, "a", "b", "echo", b"0", "json"))
            host.deliver(Message(call_id, MessageType.CANCEL, "a", "b"))
        # At most 4 + 1 handler tasks were started; the rest were refused (RESOURCE_EXHAUSTED).
        started = [t for t in asyncio.all_tasks() if "PeerTable._serve" in repr(t.get_coro())]
        assert 1 <= len(started) <= 5
        # Once the loop has run the cancelled tasks to their end (two turns: no wall-clock wait),
        # the peer is served again.
        for _ in range(2):
            await asyncio.sleep(0)
        assert await asyncio.wait_for(a.call("b", "echo", "ok"), WAIT) == "ok"

    async def test_a_burst_of_short_timeouts_leaves_no_slot_behind(self, make_node: MakeNode) -> None:
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
