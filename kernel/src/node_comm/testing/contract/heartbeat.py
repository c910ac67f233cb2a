"""Transport-independent heartbeats with a small interval and timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node_comm import CallContext, CallTimeoutError, HeartbeatConfig, Message, MessageType, NodeCommError

from .fixtures import WAIT, ContractFixtures, MakeNode, link

INTERVAL, TIMEOUT = 0.05, 0.25


def hb() -> HeartbeatConfig:
    return HeartbeatConfig(enabled=True, interval=INTERVAL, timeout=TIMEOUT)


class HeartbeatContract(ContractFixtures):
    async def test_heartbeats_keep_an_idle_link_alive(self, make_node: MakeNode) -> None:
        a = await make_node("a", heartbeat=hb())
        b = await make_node("b", heartbeat=hb())
        lost: list[str] = []
        a.on("disconnect", lambda nid, reason: lost.append(nid))
        b.on("disconnect", lambda nid, reason: lost.append(nid))
        acks = 0
        enough = asyncio.Event()
        send = b.transport.send

        async def counting(msg: Message) -> None:
            nonlocal acks
            if msg.type is MessageType.HEARTBEAT_ACK:
                acks += 1
                if acks >= 8:  # 8 intervals: well past one timeout, which kills a link without them
                    enough.set()
            await send(msg)

        b.transport.send = counting  # type: ignore[method-assign,assignment]
        await link(a, b)
        await asyncio.wait_for(enough.wait(), WAIT)
        assert a.is_connected("b") and b.is_connected("a")
        assert lost == []

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("ping", ping)
        assert await a.call("b", "ping") == "pong"

    async def test_silent_peer_is_disconnected_and_pending_calls_fail(self, make_node: MakeNode) -> None:
        a = await make_node("a", heartbeat=hb())
        b = await make_node("b")  # b answers heartbeats until we mute it below
        started = asyncio.Event()

        async def hang(payload: Any, ctx: CallContext) -> None:
            started.set()
            await asyncio.Event().wait()

        b.register("hang", hang)
        reasons: list[str] = []
        gone = asyncio.Event()

        def on_disc(nid: str, reason: str) -> None:
            reasons.append(reason)
            gone.set()

        a.on("disconnect", on_disc)
        await link(a, b)
        task = asyncio.create_task(a.call("b", "hang", {}, timeout=30))
        await asyncio.wait_for(started.wait(), WAIT)

        # From now on b sends nothing: a hears nothing back, like a hung process.
        async def mute(msg: Message) -> None:
            return None

        b.transport.send = mute  # type: ignore[method-assign,assignment]
        t0 = time.monotonic()
        await asyncio.wait_for(gone.wait(), WAIT)
        detected = time.monotonic() - t0
        assert detected <= INTERVAL + TIMEOUT + 0.5
        assert "heartbeat" in reasons[0]
        with pytest.raises(NodeCommError) as info:
            await asyncio.wait_for(task, WAIT)
        assert not isinstance(info.value, CallTimeoutError)
        assert not a.is_connected("b")
        await a.stop()
        assert len(reasons) == 1

    async def test_heartbeat_disabled_by_default(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        assert a.config.heartbeat.enabled is False
