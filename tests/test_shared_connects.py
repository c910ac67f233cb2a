"""SharedConnects: concurrent connects to one peer share the first one's outcome (grpc and nats use it)."""

from __future__ import annotations

import asyncio

import pytest

from node_comm import ConnectFailedError
from node_comm.connecting import SharedConnects, backoff


async def test_a_second_connect_shares_the_first_ones_result_and_error() -> None:
    shared = SharedConnects()
    gate = asyncio.Event()
    runs = 0

    async def dial() -> None:
        nonlocal runs
        runs += 1
        await gate.wait()
        raise ConnectFailedError("b", "refused")

    first = asyncio.ensure_future(shared.run("b", dial))
    await asyncio.sleep(0)
    assert shared.busy("b")
    second = asyncio.ensure_future(shared.run("b", dial))
    await asyncio.sleep(0)
    gate.set()
    for fut in (first, second):
        with pytest.raises(ConnectFailedError, match="refused"):
            await fut
    assert runs == 1
    assert not shared.busy("b")

    async def ok() -> None:
        return None

    assert await shared.run("b", ok) is True  # the failed one is forgotten: a new connect runs


async def test_cancelling_a_waiter_leaves_the_connect_and_cancelling_the_connect_cancels_waiters() -> None:
    shared = SharedConnects()
    gate = asyncio.Event()

    async def dial() -> None:
        await gate.wait()

    first = asyncio.ensure_future(shared.run("b", dial))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(shared.run("b", dial))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    assert await first is True

    gate.clear()
    first = asyncio.ensure_future(shared.run("c", dial))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(shared.run("c", dial))
    await asyncio.sleep(0)
    first.cancel()
    for fut in (first, waiter):
        with pytest.raises(asyncio.CancelledError):
            await fut
    assert not shared.busy("c")


def test_backoff_doubles_within_jitter_up_to_its_maximum_and_never_below_its_floor() -> None:
    delays = backoff(0.1, 0.5, jitter=0.2)
    got = [next(delays) for _ in range(6)]
    for value, base in zip(got, [0.1, 0.2, 0.4, 0.5, 0.5, 0.5], strict=True):
        assert base * 0.8 <= value <= base * 1.2
    floored = backoff(0.001, 0.001, jitter=1.0, floor=0.01)
    assert all(next(floored) >= 0.01 for _ in range(50))
