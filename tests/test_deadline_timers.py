"""The kernel's shared deadline timer: each deadline fires once, on time, in order; cancelled ones
never fire, even after compaction; and call timeouts still work with many calls in flight."""

from __future__ import annotations

import asyncio
import time

import pytest

from node_comm import CallTimeoutError, Node, NodeConfig
from node_comm._timers import DeadlineTimers


async def test_fires_in_deadline_order_and_not_early() -> None:
    loop = asyncio.get_running_loop()
    timers = DeadlineTimers(loop)
    fired: list[tuple[str, float]] = []
    done = asyncio.Event()
    t0 = loop.time()

    def hit(name: str) -> None:
        fired.append((name, loop.time()))
        if len(fired) == 3:
            done.set()

    timers.call_at(t0 + 0.06, hit, "c")
    timers.call_at(t0 + 0.02, hit, "a")
    timers.call_at(t0 + 0.04, hit, "b")
    await asyncio.wait_for(done.wait(), 2)
    assert [n for n, _ in fired] == ["a", "b", "c"]
    for (_, at), due in zip(fired, (0.02, 0.04, 0.06), strict=True):
        assert at >= t0 + due - 0.002
    assert len(timers) == 0


async def test_cancelled_entries_never_fire_even_after_compaction() -> None:
    loop = asyncio.get_running_loop()
    timers = DeadlineTimers(loop)
    fired: list[int] = []
    done = asyncio.Event()
    t0 = loop.time()
    entries = [timers.call_at(t0 + 0.05 + i * 1e-5, fired.append, i) for i in range(1000)]
    timers.call_at(t0 + 0.08, lambda _: done.set(), None)
    for i, e in enumerate(entries):
        if i % 10:
            timers.cancel(e)  # 900 cancelled: more than half, so the heap is compacted
    timers.cancel(entries[1])  # twice is a no-op
    assert len(timers) == 101
    await asyncio.wait_for(done.wait(), 2)
    assert fired == list(range(0, 1000, 10))


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        timers = DeadlineTimers(loop)
        done = asyncio.Event()

        def boom(_: object) -> None:
            raise RuntimeError("boom")

        t0 = loop.time()
        timers.call_at(t0 + 0.01, boom, None)
        timers.call_at(t0 + 0.01, lambda _: done.set(), None)
        await asyncio.wait_for(done.wait(), 2)
        assert isinstance(errors[0]["exception"], RuntimeError)
    finally:
        loop.set_exception_handler(None)


async def test_call_timeout_with_many_calls_in_flight() -> None:
    a = Node("dl-a", NodeConfig(node_id="dl-a"))
    b = Node("dl-b", NodeConfig(node_id="dl-b"))
    cancelled = asyncio.Event()

    async def fast(p: object, ctx: object) -> object:
        return p

    async def slow(p: object, ctx: object) -> object:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return p

    b.register("fast", fast)
    b.register("slow", slow)
    async with a, b:
        await a.connect("dl-b")
        t0 = time.monotonic()
        slow_call = asyncio.ensure_future(a.call("dl-b", "slow", 1, timeout=0.3))
        results = await asyncio.gather(*(a.call("dl-b", "fast", i, timeout=5) for i in range(2000)))
        assert results == list(range(2000))
        with pytest.raises(CallTimeoutError):
            await slow_call
        assert 0.29 <= time.monotonic() - t0 < 1.5
        await asyncio.wait_for(cancelled.wait(), 2)  # the caller's CANCEL reached the handler
