"""Loss is loud and fast: a peer that goes away fails pending calls at once, with a NodeCommError
that is not a timeout, and ``disconnect`` fires exactly once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node_comm import CallContext, CallTimeoutError, NodeCommError, NodeNotConnectedError

from .fixtures import WAIT, ContractFixtures, MakeNode, blocking_handler, link


async def _setup(make_node: MakeNode) -> tuple[Any, Any, asyncio.Event, list[tuple[str, str]]]:
    a = await make_node("a")
    b = await make_node("b")
    started = asyncio.Event()

    async def hang(payload: Any, ctx: CallContext) -> None:
        started.set()
        await asyncio.Event().wait()

    b.register("hang", hang)
    await link(a, b)
    disconnects: list[tuple[str, str]] = []
    a.on("disconnect", lambda nid, reason: disconnects.append((nid, reason)))
    return a, b, started, disconnects


async def _assert_fails_fast(task: asyncio.Task[Any], since: float) -> NodeCommError:
    with pytest.raises(NodeCommError) as info:
        await asyncio.wait_for(task, WAIT)
    exc = info.value
    assert not isinstance(exc, CallTimeoutError), f"loss reported as a timeout: {exc!r}"
    assert exc.code != "DEADLINE_EXCEEDED"
    # The call had 30 s left: failing within a second means it did not wait for its deadline.
    assert time.monotonic() - since < 1.0
    return exc


class LossContract(ContractFixtures):
    async def test_peer_stopping_fails_pending_call_at_once(self, make_node: MakeNode) -> None:
        a, b, started, disconnects = await _setup(make_node)
        task = asyncio.create_task(a.call("b", "hang", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        t0 = time.monotonic()
        await b.stop(grace=0)
        exc = await _assert_fails_fast(task, t0)
        assert isinstance(exc, NodeNotConnectedError) and exc.node_id == "b"
        assert not a.is_connected("b")
        await a.stop()
        assert [nid for nid, _ in disconnects] == ["b"]

    async def test_peer_transport_closing_abruptly_fails_pending_call(self, make_node: MakeNode) -> None:
        """The peer's transport goes away under a running node, as when its process dies."""
        a, b, started, disconnects = await _setup(make_node)
        tasks = [asyncio.create_task(a.call("b", "hang", {"i": i}, timeout=30)) for i in range(3)]
        await asyncio.wait_for(started.wait(), WAIT)
        t0 = time.monotonic()
        await b.transport.stop("killed")
        for task in tasks:
            await _assert_fails_fast(task, t0)
        await a.stop()
        assert [nid for nid, _ in disconnects] == ["b"]

    async def test_local_disconnect_fails_pending_calls(self, make_node: MakeNode) -> None:
        a, _b, started, disconnects = await _setup(make_node)
        task = asyncio.create_task(a.call("b", "hang", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        t0 = time.monotonic()
        await a.disconnect("b", "test is done with b")
        await _assert_fails_fast(task, t0)
        await a.stop()
        assert disconnects == [("b", "test is done with b")]

    async def test_stopping_caller_fails_its_own_pending_calls(self, make_node: MakeNode) -> None:
        a, _b, started, _ = await _setup(make_node)
        task = asyncio.create_task(a.call("b", "hang", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        t0 = time.monotonic()
        await a.stop(grace=0)
        await _assert_fails_fast(task, t0)

    async def test_remote_handler_cancelled_when_caller_goes_away(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        started, cancelled = asyncio.Event(), asyncio.Event()
        b.register("hang", blocking_handler(started, cancelled))
        await link(a, b)
        task = asyncio.create_task(a.call("b", "hang", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        await a.stop(grace=0)
        await asyncio.wait_for(cancelled.wait(), WAIT)
        with pytest.raises(NodeCommError):
            await task

    async def test_stop_lets_inflight_calls_finish_within_grace(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b", shutdown_grace=5.0)
        started = asyncio.Event()
        release = asyncio.Event()

        async def work(payload: Any, ctx: CallContext) -> str:
            started.set()
            await release.wait()
            return "finished"

        b.register("work", work)
        await link(a, b)
        task = asyncio.create_task(a.call("b", "work", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        stopping = asyncio.create_task(b.stop())
        await asyncio.sleep(0)  # let stop() begin: it now refuses new calls
        release.set()
        assert await asyncio.wait_for(task, WAIT) == "finished"
        await asyncio.wait_for(stopping, WAIT)

    async def test_broadcast_with_a_peer_lost_midway(self, make_node: MakeNode) -> None:
        hub = await make_node("hub")
        ok = await make_node("ok")
        doomed = await make_node("doomed")
        started = asyncio.Event()

        async def work(payload: Any, ctx: CallContext) -> str:
            if ctx.node.node_id == "doomed":
                started.set()
                await asyncio.Event().wait()
            return "done"

        ok.register("work", work)
        doomed.register("work", work)
        await link(hub, ok)
        await link(hub, doomed)
        task = asyncio.create_task(hub.broadcast("work", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)
        t0 = time.monotonic()
        await doomed.stop(grace=0)
        results = await asyncio.wait_for(task, WAIT)
        assert time.monotonic() - t0 < 1.0
        assert results["ok"] == "done"
        assert isinstance(results["doomed"], NodeCommError)
        assert not isinstance(results["doomed"], CallTimeoutError)
