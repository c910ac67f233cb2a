"""``Transport.send_many``: broadcast hands all its targets to the transport at once (a broker
transport publishes the payload once); the default sends each, and per-target failures stay
per target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from node_comm import CallContext, InterceptorConfig, Message, Node, NodeConfig, NodeNotConnectedError, TransportConfig


def memory(node_id: str, **kw: Any) -> NodeConfig:
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="memory"), **kw)


async def test_broadcast_hands_every_target_to_send_many_once() -> None:
    hub = Node("hub", memory("hub"))
    parts = [Node(f"p{i}", memory(f"p{i}")) for i in range(3)]
    batches: list[list[Message]] = []
    original = hub.transport.send_many

    async def spy(messages: Sequence[Message]) -> list[BaseException | None]:
        batches.append(list(messages))
        return await original(messages)

    hub.transport.send_many = spy  # type: ignore[method-assign]

    async def whoami(payload: Any, ctx: CallContext) -> str:
        return ctx.node.node_id

    async with hub:
        for p in parts:
            p.register("whoami", whoami)
            await p.start()
            await hub.connect(p.node_id)
        try:
            assert await hub.broadcast("whoami", None, timeout=5) == {"p0": "p0", "p1": "p1", "p2": "p2"}
            assert len(batches) == 1
            (batch,) = batches
            assert sorted(m.target for m in batch) == ["p0", "p1", "p2"]
            assert len({id(m.payload) for m in batch}) == 1  # one encoded payload for all
            assert len({m.id for m in batch}) == 3  # each its own call
        finally:
            for p in parts:
                await p.stop()


async def test_a_target_send_many_fails_fails_alone() -> None:
    hub = Node("hub", memory("hub"))
    parts = [Node(f"p{i}", memory(f"p{i}")) for i in range(3)]
    original = hub.transport.send_many

    async def flaky(messages: Sequence[Message]) -> list[BaseException | None]:
        keep = [m for m in messages if m.target != "p1"]
        results = iter(await original(keep))
        return [NodeNotConnectedError("p1", "injected") if m.target == "p1" else next(results) for m in messages]

    hub.transport.send_many = flaky  # type: ignore[method-assign]

    async def ok(payload: Any, ctx: CallContext) -> str:
        return "ok"

    async with hub:
        for p in parts:
            p.register("ok", ok)
            await p.start()
            await hub.connect(p.node_id)
        try:
            results = await hub.broadcast("ok", None, timeout=5)
            assert results["p0"] == results["p2"] == "ok"
            assert isinstance(results["p1"], NodeNotConnectedError) and "injected" in str(results["p1"])
        finally:
            for p in parts:
                await p.stop()


async def test_with_interceptors_each_call_goes_through_them() -> None:
    hub = Node("hub", memory("hub", interceptors=[InterceptorConfig("logging")]))
    parts = [Node(f"p{i}", memory(f"p{i}")) for i in range(2)]
    calls: list[int] = []
    original = hub.transport.send_many

    async def spy(messages: Sequence[Message]) -> list[BaseException | None]:
        calls.append(len(messages))
        return await original(messages)

    hub.transport.send_many = spy  # type: ignore[method-assign]

    async def ok(payload: Any, ctx: CallContext) -> str:
        return "ok"

    async with hub:
        for p in parts:
            p.register("ok", ok)
            await p.start()
            await hub.connect(p.node_id)
        try:
            assert await hub.broadcast("ok", None, timeout=5) == {"p0": "ok", "p1": "ok"}
            assert calls == []  # the interceptor chain sends each call itself
        finally:
            for p in parts:
                await p.stop()
