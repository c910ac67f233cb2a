"""While a node does not read a peer (its notify handlers are at their cap), the NATS transport
parks what the broker pushes from that peer, in order and bounded: a peer that floods past the
bound is dropped, the node keeps serving the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_comm import CallTimeoutError
from node_comm import peers as peers_module

from .conftest import NodesFactory

WAIT = 10.0


class Parked:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.seen: list[Any] = []
        self.second = asyncio.Event()  # set when a second notify has run

    async def __call__(self, payload: Any, ctx: Any) -> None:
        self.seen.append(payload)
        if len(self.seen) == 2:
            self.second.set()
        self.started.set()
        await self.release.wait()


async def test_parked_messages_run_in_order_once_the_node_reads_again(nodes: NodesFactory) -> None:
    a = await nodes("a")
    b = await nodes("b", max_concurrent_notifies_per_peer=1)
    parked = Parked()
    b.register("park", parked)
    b.register("echo", lambda p, ctx: p)
    await a.connect("b")
    for i in range(30):
        await a.notify("b", "park", i)
    await asyncio.wait_for(parked.started.wait(), WAIT)
    call = asyncio.ensure_future(a.call("b", "echo", "after", timeout=WAIT))
    link = b.transport._links["a"]  # type: ignore[attr-defined]
    for _ in range(200):  # the frames are on their way through the broker: wait until parked
        if link.parked is not None and len(link.parked) == 30:
            break
        await asyncio.sleep(0.01)
    assert len(b._peers["a"].held) <= 1 and not call.done()
    parked.release.set()
    assert await call == "after"
    assert parked.seen == list(range(30))


async def test_a_peer_flooding_while_not_read_is_dropped(nodes: NodesFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "MAX_HELD_NOTIFIES", 40)
    a = await nodes("a")
    b = await nodes("b", max_concurrent_notifies_per_peer=1)
    c = await nodes("c")
    parked = Parked()
    b.register("park", parked)
    b.register("echo", lambda p, ctx: p)
    lost = asyncio.Event()
    reasons: list[str] = []
    b.on("disconnect", lambda peer_id, reason: (reasons.append(reason), lost.set()) if peer_id == "a" else None)
    await a.connect("b")
    await c.connect("b")
    for i in range(200):
        if not a.is_connected("b"):
            break
        await a.notify("b", "park", i)
    await asyncio.wait_for(lost.wait(), WAIT)
    assert "while this node did not read it" in reasons[0]
    assert await c.call("b", "echo", "still serving", timeout=WAIT) == "still serving"
    parked.release.set()


async def test_a_grouped_broadcast_from_a_peer_not_read_waits_too(nodes: NodesFactory) -> None:
    # One broadcast group: the small broadcast below is one publish that b and c both receive.
    a = await nodes("a", broadcast_groups=1)
    b = await nodes("b", broadcast_groups=1, max_concurrent_notifies_per_peer=1)
    c = await nodes("c", broadcast_groups=1)
    parked = Parked()
    b.register("park", parked)
    for node in (b, c):
        node.register("echo", lambda p, ctx: p)
    await a.connect("b")
    await a.connect("c")
    await a.notify("b", "park", 0)
    await asyncio.wait_for(parked.started.wait(), WAIT)
    await a.notify("b", "park", 1)  # parked on the link: b does not read a now
    out = await a.broadcast("echo", "hi", timeout=0.5)
    assert out["c"] == "hi"
    assert isinstance(out["b"], CallTimeoutError)  # b did not act on it while not reading a
    parked.release.set()
    await asyncio.wait_for(parked.second.wait(), WAIT)  # b reads a again: the parked notify runs
