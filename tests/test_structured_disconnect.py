"""The kernel tells a transport that a peer dropped for silence may come back through
``disconnect(..., may_return=True)``, not through the text of the reason; a transport whose
``disconnect`` predates the keyword keeps working."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from node_comm import HeartbeatConfig, Node, NodeConfig, TransportConfig, hookimpl
from node_comm.transport import disconnect_accepts_may_return
from node_comm_memory.transport import MemoryTransport

WAIT = 5.0


class RecordingTransport(MemoryTransport):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.calls: list[tuple[str, str, bool]] = []

    async def disconnect(self, node_id: str, reason: str, *, may_return: bool = False) -> None:
        self.calls.append((node_id, reason, may_return))
        await super().disconnect(node_id, reason, may_return=may_return)


class OldTransport(MemoryTransport):
    """A third-party transport written before ``may_return``."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.calls: list[tuple[str, str]] = []

    async def disconnect(self, node_id: str, reason: str) -> None:  # type: ignore[override]
        self.calls.append((node_id, reason))
        await super().disconnect(node_id, reason)


class Plugin:
    @hookimpl
    def node_comm_register_transports(self, register: Callable[..., None]) -> None:
        register("recording", RecordingTransport)
        register("old-style", OldTransport)


def config(node_id: str, mode: str, heartbeat: bool) -> NodeConfig:
    hb = HeartbeatConfig(enabled=heartbeat, interval=0.02, timeout=0.1)
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode=mode), heartbeat=hb, shutdown_grace=0.0)


async def dropped_for_silence(mode: str) -> tuple[Node, list[Any]]:
    a = Node("a", config("a", mode, heartbeat=True), plugins=[Plugin()])
    b = Node("b", config("b", mode, heartbeat=False), plugins=[Plugin()])
    gone = asyncio.Event()
    a.on("disconnect", lambda peer, reason: gone.set())
    async with a, b:
        await a.connect("b")
        b.transport.freeze()  # type: ignore[attr-defined]
        await asyncio.wait_for(gone.wait(), WAIT)
        b.transport.thaw()  # type: ignore[attr-defined]
        calls = list(a.transport.calls)  # type: ignore[attr-defined]
    return a, calls


async def test_heartbeat_timeout_says_the_peer_may_return() -> None:
    _, calls = await dropped_for_silence("recording")
    assert len(calls) == 1
    peer, reason, may_return = calls[0]
    assert peer == "b" and may_return is True
    assert reason.startswith("heartbeat timeout")  # still the human text


async def test_deliberate_disconnect_says_the_peer_will_not_return() -> None:
    a = Node("a", config("a", "recording", heartbeat=False), plugins=[Plugin()])
    b = Node("b", config("b", "recording", heartbeat=False), plugins=[Plugin()])
    async with a, b:
        await a.connect("b")
        await a.disconnect("b")
        assert a.transport.calls == [("b", "disconnected by local node", False)]  # type: ignore[attr-defined]


async def test_transport_without_may_return_still_dropped_for_silence() -> None:
    a, calls = await dropped_for_silence("old-style")
    assert len(calls) == 1 and calls[0][0] == "b"
    assert not a.is_connected("b")


def test_disconnect_accepts_may_return() -> None:
    assert disconnect_accepts_may_return(RecordingTransport())
    assert not disconnect_accepts_may_return(OldTransport())
