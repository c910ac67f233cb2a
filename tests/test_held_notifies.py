"""Notifies held past ``max_concurrent_notifies_per_peer`` are bounded per peer: a transport that
cannot pause reading one peer (a broker's push) must not let that peer grow the node's memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_comm import DisconnectKind, Node, NodeConfig
from node_comm import peers as peers_module

WAIT = 10.0


class Parked:
    """A notify handler that waits until released; ``all_ran`` is set once ``expected`` ran."""

    def __init__(self, expected: int = 0) -> None:
        self.release = asyncio.Event()
        self.all_ran = asyncio.Event()
        self.expected = expected
        self.ran = 0

    async def __call__(self, payload: Any, ctx: Any) -> None:
        await self.release.wait()
        self.ran += 1
        if self.ran == self.expected:
            self.all_ran.set()


class Lost(list[Any]):
    """``(peer_id, reason)`` of each disconnect; ``event`` is set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def __call__(self, peer_id: str, reason: Any) -> None:
        self.append((peer_id, reason))
        self.event.set()


async def pair(**config: Any) -> tuple[Node, Node, Parked, Lost]:
    a = Node("a")
    b = Node("b", NodeConfig(node_id="b", max_concurrent_notifies_per_peer=2, **config))
    parked = Parked()
    b.register("park", parked)
    lost = Lost()
    b.on("disconnect", lost)
    await a.start()
    await b.start()
    b.transport.host.reading_paused = lambda peer_id: None  # type: ignore[method-assign]  # as a broker transport
    await a.connect("b")
    return a, b, parked, lost


async def test_a_peer_flooding_notifies_past_the_bound_is_disconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "MAX_HELD_NOTIFIES", 50)
    a, b, parked, lost = await pair()
    try:
        for i in range(200):
            if not a.is_connected("b"):
                break
            await a.notify("b", "park", i)
        await asyncio.wait_for(lost.event.wait(), WAIT)
        assert lost[0][0] == "a"
        reason = lost[0][1]
        assert reason.kind is DisconnectKind.LOCAL
        assert "max_concurrent_notifies_per_peer=2" in reason and "without waiting" in reason
        assert b.is_running and "a" not in b._peers
        parked.release.set()
    finally:
        await a.stop(grace=0)
        await b.stop(grace=0)


async def test_held_bytes_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "MAX_HELD_BYTES", 64 * 1024)
    a, b, parked, lost = await pair()
    try:
        for _ in range(20):
            if not a.is_connected("b"):
                break
            await a.notify("b", "park", "x" * 10_000)
        await asyncio.wait_for(lost.event.wait(), WAIT)
        assert "bytes may wait" in lost[0][1]
    finally:
        parked.release.set()
        await a.stop(grace=0)
        await b.stop(grace=0)


async def test_notifies_within_the_bound_all_run() -> None:
    a, b, parked, lost = await pair()
    try:
        for i in range(100):
            await a.notify("b", "park", i)
        parked.expected = 100
        parked.release.set()
        await asyncio.wait_for(parked.all_ran.wait(), WAIT)
        assert not lost
        assert b._peers["a"].held_bytes == 0
    finally:
        await a.stop(grace=0)
        await b.stop(grace=0)
