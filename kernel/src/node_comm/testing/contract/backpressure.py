"""Back-pressure: notify handlers per peer are capped by not reading that peer (nothing dropped), and a
call's deadline holds while its payload cannot be sent because the peer reads nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node_comm import CallContext, CallTimeoutError, MethodOptions, Node

from .fixtures import WAIT, ContractFixtures, MakeNode, TransportCapabilities, link, needs

MiB = 1024 * 1024
#: Larger than every buffer between two gRPC nodes (send queue, HTTP/2 windows, socket buffers).
STUCK_PAYLOAD = 64 * MiB


class Blocker:
    """A notify handler that runs until ``release`` is set, counting how many run at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.done = 0
        self.started = asyncio.Event()
        self.all_done = asyncio.Event()
        self.expected = 0

    async def __call__(self, payload: Any, ctx: CallContext) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1
            self.done += 1
            if self.done == self.expected:
                self.all_done.set()


async def eventually(condition: Any) -> None:
    """Wait until ``condition()`` holds (for states no event announces), at most ``WAIT`` seconds."""
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def _stall_reading(a: Node, b: Node, blocker: Blocker) -> None:
    """Make ``b`` stop reading ``a``: its single notify slot is taken by a handler that blocks."""
    b.register("block", blocker)
    await a.notify("b", "block", None)
    await asyncio.wait_for(blocker.started.wait(), WAIT)


def _needs_read_pausing(capabilities: TransportCapabilities) -> None:
    """These tests stop a peer from reading its link (``reading_paused``): a transport whose peers'
    messages are pushed to it (a broker's subscription) declares ``pauses_reading=False``."""
    needs(capabilities, "pauses_reading")


class BackpressureContract(ContractFixtures):
    async def test_notifies_past_the_cap_wait_and_none_is_dropped(self, make_node: MakeNode) -> None:
        _needs_read_pausing(self.capabilities)
        a = await make_node("a")
        b = await make_node("b", max_concurrent_notifies_per_peer=2)
        blocker = Blocker()
        blocker.expected = 20
        b.register("block", blocker)
        await link(a, b)

        async def send_all() -> None:
            for i in range(20):
                await a.notify("b", "block", i)

        sender = asyncio.ensure_future(send_all())
        await eventually(lambda: blocker.running == 2)
        # Give the transport time to deliver more if it would: the cap must hold anyway (an absence
        # cannot be awaited as an event).
        await asyncio.sleep(0.1)
        assert blocker.running == 2
        assert len(b._peers["a"].held) <= 1  # b stopped reading a instead
        blocker.release.set()
        await asyncio.wait_for(sender, WAIT)
        await asyncio.wait_for(blocker.all_done.wait(), WAIT)
        assert blocker.peak == 2
        assert a.is_connected("b")

    async def test_call_deadline_holds_while_the_peer_reads_nothing(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b", max_concurrent_notifies_per_peer=1)
        b.register("echo", lambda p, ctx: p, MethodOptions(serializer="raw"))
        blocker = Blocker()
        await link(a, b)
        await _stall_reading(a, b, blocker)

        t0 = time.monotonic()
        with pytest.raises(CallTimeoutError):
            await asyncio.wait_for(a.call("b", "echo", b"x" * STUCK_PAYLOAD, serializer="raw", timeout=0.3), WAIT)
        assert time.monotonic() - t0 < 2.0

        blocker.release.set()  # b reads on: what was sent of the abandoned payload is dropped there
        assert await a.call("b", "echo", b"after", serializer="raw", timeout=WAIT) == b"after"
        budget = getattr(b.transport, "receive_budget", None)
        if budget is not None:
            assert budget.used == 0

    async def test_broadcast_returns_at_its_timeout_with_the_slow_target_timed_out(
        self,
        make_node: MakeNode,
    ) -> None:
        _needs_read_pausing(self.capabilities)
        a = await make_node("a")
        b = await make_node("b", max_concurrent_notifies_per_peer=1)
        c = await make_node("c")
        for node in (b, c):
            node.register("echo", lambda p, ctx: p, MethodOptions(serializer="raw"))
        blocker = Blocker()
        await link(a, b)
        await link(a, c)
        await _stall_reading(a, b, blocker)
        # Fill what can be queued towards b, so the broadcast's message to b cannot be sent either.
        filler = asyncio.ensure_future(a.call("b", "echo", b"f" * STUCK_PAYLOAD, serializer="raw", timeout=30))

        t0 = time.monotonic()
        results = await asyncio.wait_for(a.broadcast("echo", b"hi", timeout=0.5, serializer="raw"), WAIT)
        assert time.monotonic() - t0 < 2.5
        assert results["c"] == b"hi"
        assert isinstance(results["b"], CallTimeoutError)

        blocker.release.set()
        assert len(await asyncio.wait_for(filler, 30)) == STUCK_PAYLOAD

    async def test_a_transport_that_ignores_flow_control_still_runs_every_notify_within_the_cap(
        self,
        make_node: MakeNode,
    ) -> None:
        a = await make_node("a")
        b = await make_node("b", max_concurrent_notifies_per_peer=2)
        b.transport.host.reading_paused = lambda peer_id: None  # type: ignore[method-assign]  # as a transport that never asks
        blocker = Blocker()
        blocker.expected = 20
        b.register("block", blocker)
        await link(a, b)
        for i in range(20):
            await asyncio.wait_for(a.notify("b", "block", i), WAIT)  # never waits: nobody pauses
        held = b._peers["a"].held
        await eventually(lambda: blocker.running == 2 and len(held) == 18)  # grpc: frames still in flight
        blocker.release.set()
        await asyncio.wait_for(blocker.all_done.wait(), WAIT)
        assert blocker.peak == 2
