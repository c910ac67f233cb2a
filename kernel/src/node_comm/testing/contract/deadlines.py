"""Deadlines and cancellation travel: timeouts and cancelled callers cancel the remote handler;
calls made inside a handler inherit what is left of the deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node_comm import CallContext, CallTimeoutError, NodeCommError

from .fixtures import WAIT, ContractFixtures, MakeNode, blocking_handler, link


class DeadlinesContract(ContractFixtures):
    async def test_timeout_raises_and_cancels_remote_handler(self, pair: Any) -> None:
        a, b = pair
        started, cancelled = asyncio.Event(), asyncio.Event()
        b.register("block", blocking_handler(started, cancelled))

        t0 = time.monotonic()
        with pytest.raises(CallTimeoutError) as info:
            await a.call("b", "block", {}, timeout=0.2)
        elapsed = time.monotonic() - t0
        assert info.value.target == "b" and info.value.method == "block"
        assert isinstance(info.value, NodeCommError) and isinstance(info.value, TimeoutError)
        assert 0.15 <= elapsed < 2.0
        assert started.is_set()
        await asyncio.wait_for(cancelled.wait(), WAIT)
        assert a.is_connected("b")  # a timeout is not a lost connection

    async def test_default_timeout_from_config(self, make_node: MakeNode) -> None:
        a = await make_node("a", default_timeout=0.2)
        b = await make_node("b")
        started, cancelled = asyncio.Event(), asyncio.Event()
        b.register("block", blocking_handler(started, cancelled))
        await link(a, b)
        with pytest.raises(CallTimeoutError):
            await asyncio.wait_for(a.call("b", "block"), WAIT)
        await asyncio.wait_for(cancelled.wait(), WAIT)

    async def test_cancelled_caller_cancels_remote_handler(self, pair: Any) -> None:
        a, b = pair
        started, cancelled = asyncio.Event(), asyncio.Event()
        b.register("block", blocking_handler(started, cancelled))

        task = asyncio.create_task(a.call("b", "block", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(cancelled.wait(), WAIT)

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("ping", ping)
        assert await a.call("b", "ping") == "pong"

    async def test_wait_for_around_call_cancels_remote_handler(self, pair: Any) -> None:
        a, b = pair
        started, cancelled = asyncio.Event(), asyncio.Event()
        b.register("block", blocking_handler(started, cancelled))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(a.call("b", "block", {}, timeout=30), 0.2)
        await asyncio.wait_for(cancelled.wait(), WAIT)

    async def test_handler_sees_remaining_deadline(self, pair: Any) -> None:
        a, b = pair
        seen: list[float | None] = []

        async def look(payload: Any, ctx: CallContext) -> None:
            seen.append(ctx.time_remaining())

        b.register("look", look)
        await a.call("b", "look", timeout=2.0)
        await a.call("b", "look", timeout=60.0)
        assert seen[0] is not None and 1.0 < seen[0] <= 2.0
        assert seen[1] is not None and 50.0 < seen[1] <= 60.0

    async def test_nested_call_inherits_remaining_deadline(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        c = await make_node("c")
        await link(a, b)
        await link(b, c)
        outer_left: list[float] = []
        inner_left: list[float] = []

        async def outer(payload: Any, ctx: CallContext) -> str:
            left = ctx.time_remaining()
            assert left is not None
            outer_left.append(left)
            # Asks for 60 s, but only what is left of the caller's 1 s may be used.
            return str(await ctx.node.call("c", "inner", None, timeout=60))

        async def inner(payload: Any, ctx: CallContext) -> str:
            left = ctx.time_remaining()
            assert left is not None
            inner_left.append(left)
            return "deep"

        b.register("outer", outer)
        c.register("inner", inner)
        assert await a.call("b", "outer", timeout=1.0) == "deep"
        assert 0 < inner_left[0] <= outer_left[0] <= 1.0

    async def test_nested_call_times_out_with_the_outer_deadline(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        c = await make_node("c")
        await link(a, b)
        await link(b, c)
        inner_started, inner_cancelled = asyncio.Event(), asyncio.Event()
        c.register("inner", blocking_handler(inner_started, inner_cancelled))

        async def outer(payload: Any, ctx: CallContext) -> str:
            # No timeout given: default_timeout (30 s) would apply, the inherited 0.3 s wins.
            await ctx.node.call("c", "inner", None)
            return "unreachable"

        b.register("outer", outer)
        t0 = time.monotonic()
        with pytest.raises(CallTimeoutError):
            await a.call("b", "outer", timeout=0.3)
        assert time.monotonic() - t0 < 2.0
        # The innermost handler is cancelled too: the deadline travelled two hops.
        await asyncio.wait_for(inner_cancelled.wait(), WAIT)

    async def test_call_without_timeout_uses_default_and_no_deadline_when_none(self, make_node: MakeNode) -> None:
        a = await make_node("a", default_timeout=None)
        b = await make_node("b")
        await link(a, b)
        seen: list[float | None] = []

        async def look(payload: Any, ctx: CallContext) -> None:
            seen.append(ctx.time_remaining())

        b.register("look", look)
        await a.call("b", "look")
        assert seen == [None]

    async def test_cancel_reaches_only_the_cancelled_call_when_ids_collide(self, make_node: MakeNode) -> None:
        """Fresh nodes number their calls alike: a's first call and b's first call share an id on one
        link. Cancelling a's call must cancel b's handler for it, never a's handler for b's call."""
        a = await make_node("a")
        b = await make_node("b")
        await link(a, b)
        on_b = (asyncio.Event(), asyncio.Event())  # started, cancelled: b serving a's call
        on_a = (asyncio.Event(), asyncio.Event())  # a serving b's call
        release_a = asyncio.Event()

        async def hang_b(payload: Any, ctx: CallContext) -> None:
            await blocking_handler(*on_b)(payload, ctx)

        async def hang_a(payload: Any, ctx: CallContext) -> str:
            on_a[0].set()
            try:
                await release_a.wait()
            except asyncio.CancelledError:
                on_a[1].set()
                raise
            return "a finished"

        b.register("hang", hang_b)
        a.register("hang", hang_a)
        a_call = asyncio.create_task(a.call("b", "hang", timeout=30))
        b_call = asyncio.create_task(b.call("a", "hang", timeout=30))
        await asyncio.wait_for(asyncio.gather(on_b[0].wait(), on_a[0].wait()), WAIT)
        a_call.cancel()
        await asyncio.wait_for(on_b[1].wait(), WAIT)
        assert not on_a[1].is_set()
        release_a.set()
        assert await asyncio.wait_for(b_call, WAIT) == "a finished"
        assert not on_a[1].is_set()

    @pytest.mark.parametrize("timeout", [0, -1])
    async def test_non_positive_timeout_fails_without_running_handler(self, pair: Any, timeout: float) -> None:
        a, b = pair
        runs = 0

        async def count(payload: Any, ctx: CallContext) -> int:
            nonlocal runs
            runs += 1
            return runs

        b.register("count", count)
        with pytest.raises(CallTimeoutError):
            await a.call("b", "count", timeout=timeout)
        assert await a.call("b", "count") == 1
