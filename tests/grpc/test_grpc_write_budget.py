"""The node-wide budget of large writes in flight: a broadcast of a large payload holds a few
joined batches at a time, not one per target, and a peer that stops reading cannot hold it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import pytest
from conftest import grpc_config
from rawclient import raw_client

from node_comm import CallTimeoutError, MethodOptions
from node_comm_grpc.transport import LARGE_WRITES_IN_FLIGHT
from node_comm_grpc.write_budget import WriteBudget

KiB = 1024
MiB = 1024 * KiB
WAIT = 10.0


# ---------------------------------------------------------------------------------------------- unit
async def test_takes_in_order_within_capacity() -> None:
    budget = WriteBudget(capacity=300, patience=0)
    first = await budget.take(200)
    order: list[str] = []

    async def taker(name: str, n: int) -> None:
        grant = await budget.take(n)
        order.append(name)
        await asyncio.sleep(0)
        grant.release()

    waiting = [asyncio.ensure_future(taker("b", 200)), asyncio.ensure_future(taker("c", 50))]
    for _ in range(5):
        await asyncio.sleep(0)
    # "c" would fit now, but "b" asked first: nobody jumps the queue.
    assert order == [] and budget.used == 200
    first.release()
    first.release()  # a second release gives nothing back twice
    await asyncio.gather(*waiting)
    assert order == ["b", "c"] and budget.used == 0 and budget.peak <= 300


async def test_one_write_larger_than_capacity_goes_alone() -> None:
    budget = WriteBudget(capacity=100, patience=0)
    grant = await budget.take(1000)
    assert budget.used == 1000
    grant.release()
    assert budget.used == 0


async def test_a_write_that_takes_too_long_stops_counting() -> None:
    budget = WriteBudget(capacity=100, patience=0.05)
    stuck = await budget.take(100)  # never released by its writer (a peer that stopped reading)
    grant = await asyncio.wait_for(budget.take(100), WAIT)  # gets in after the patience
    grant.release()
    stuck.release()  # the late release changes nothing
    assert budget.used == 0


async def test_a_taker_cancelled_while_waiting_leaks_nothing() -> None:
    budget = WriteBudget(capacity=100, patience=0)
    held = await budget.take(100)
    waiter = asyncio.ensure_future(budget.take(100))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    assert budget.used == 0
    again = await asyncio.wait_for(budget.take(100), WAIT)
    again.release()
    assert budget.used == 0


# ---------------------------------------------------------------------------------------------- over gRPC
async def sinks(nodes, a, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    names = []
    for i in range(n):
        p = await nodes(f"p{i}", grpc_config(f"p{i}", port=None, chunk_size=64 * KiB, max_batch_bytes=64 * KiB))
        p.register("sink", lambda data, ctx: b"%d" % len(data), MethodOptions(serializer="raw"))
        await p.connect(a.node_id, a.address)
        names.append(p.node_id)
    return names


async def test_a_large_broadcast_holds_a_few_batches_not_one_per_target(nodes) -> None:
    a = await nodes("a", grpc_config("a", chunk_size=64 * KiB, max_batch_bytes=64 * KiB))
    names = await sinks(nodes, a, 8)
    data = bytes(range(256)) * (4 * MiB // 256)
    out = await a.broadcast("sink", data, serializer="raw", timeout=WAIT)
    assert out == {name: b"%d" % len(data) for name in names}
    budget = a.transport.write_budget  # type: ignore[attr-defined]
    assert budget.capacity == LARGE_WRITES_IN_FLIGHT * 64 * KiB
    assert 64 * KiB <= budget.peak <= budget.capacity  # it was used, and never passed
    assert budget.used == 0


async def test_links_waiting_for_the_budget_do_not_hold_their_last_batch(nodes, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A link's writer waiting for its next turn must not keep the batch it wrote last alive: with
    # N links waiting, that was N joined batches beside the payload (26x P for 16 MiB to 100).
    a = await nodes("a", grpc_config("a", chunk_size=64 * KiB, max_batch_bytes=64 * KiB))
    names = await sinks(nodes, a, 8)
    written: list[bytes] = []  # every large batch the coordinator wrote, once its write ended
    alive_at_take: list[int] = []
    for link in a.transport._links.values():  # type: ignore[attr-defined]
        write = link._write

        async def recording(data: bytes, write: Any = write) -> None:
            await write(data)
            if len(data) >= 16 * KiB:
                written.append(data)

        link._write = recording
    take = WriteBudget.take

    async def counting_take(self: WriteBudget, n: int) -> Any:
        # Held only by ``written``, the loop variable and getrefcount's argument: by nobody else.
        alive_at_take.append(sum(1 for d in written if sys.getrefcount(d) > 3))
        return await take(self, n)

    monkeypatch.setattr(WriteBudget, "take", counting_take)
    data = bytes(range(256)) * (4 * MiB // 256)
    out = await a.broadcast("sink", data, serializer="raw", timeout=WAIT)
    assert out == {name: b"%d" % len(data) for name in names}
    assert len(written) > 8 * 4 and len(alive_at_take) > 8 * 4  # every link wrote (and waited) often
    assert max(alive_at_take) == 0


async def test_peers_that_stop_reading_do_not_hold_up_the_others(nodes) -> None:
    b = await nodes("b", grpc_config("b", chunk_size=64 * KiB, max_batch_bytes=64 * KiB, stall_timeout=60.0))
    names = await sinks(nodes, b, 3)
    data = b"x" * (8 * MiB)
    async with contextlib.AsyncExitStack() as stack:
        # As many readers that never read a byte as the budget has batches: their writes fill it.
        stalled = [f"raw{i}" for i in range(LARGE_WRITES_IN_FLIGHT)]
        for name in stalled:
            await stack.enter_async_context(raw_client(b.address, node_id=name))
        out = await b.broadcast("sink", data, serializer="raw", targets=[*stalled, *names], timeout=4.0)
    assert {name: out[name] for name in names} == {name: b"%d" % len(data) for name in names}
    assert all(isinstance(out[name], CallTimeoutError) for name in stalled)
