"""Broadcast over NATS: a large payload is published once and fanned out by the broker to its
targets only; results, errors and timeouts still come back per participant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node_comm import CallContext, CallTimeoutError, MethodOptions, Node, RemoteExecutionError
from tests.natsd import NatsServer

from .conftest import NodesFactory, nats_config

MiB = 1024 * 1024


async def whoami(payload: Any, ctx: CallContext) -> str:
    if payload == "fail" and ctx.node.node_id == "p1":
        raise ValueError("p1 fails on purpose")
    if payload == "hang" and ctx.node.node_id == "p2":
        await asyncio.Event().wait()
    return ctx.node.node_id


async def star(nodes: NodesFactory, n: int, **opts: Any) -> tuple[Node, list[Node]]:
    hub = await nodes("hub", **opts)
    parts = [await nodes(f"p{i}", **opts) for i in range(n)]
    for p in parts:
        p.register("whoami", whoami)
        await p.connect("hub")
    return hub, parts


@pytest.fixture
async def spy(nats_server: NatsServer, nats_prefix: str) -> AsyncIterator[list[Any]]:
    """Every message on the chunk subjects of broadcasts (``P.xfer.>``) of this test."""
    import nats

    seen: list[Any] = []

    async def collect(msg: Any) -> None:
        seen.append(msg)

    nc = await nats.connect(nats_server.url)
    await nc.subscribe(f"{nats_prefix}.xfer.>", cb=collect)
    await nc.flush()
    try:
        yield seen
    finally:
        await nc.close()


async def test_small_broadcast_reaches_every_participant(nodes: NodesFactory, spy: list[Any]) -> None:
    hub, parts = await star(nodes, 6)
    results = await hub.broadcast("whoami", "hi", timeout=5)
    assert results == {p.node_id: p.node_id for p in parts}
    assert spy == []  # small payloads go to each target on its own subject


async def test_per_participant_errors_and_timeouts(nodes: NodesFactory) -> None:
    hub, parts = await star(nodes, 4)
    failed = await hub.broadcast("whoami", "fail", timeout=5)
    assert isinstance(failed["p1"], RemoteExecutionError) and failed["p1"].code == "HANDLER_ERROR"
    assert [failed[f"p{i}"] for i in (0, 2, 3)] == ["p0", "p2", "p3"]
    slow = await hub.broadcast("whoami", "hang", timeout=0.5)
    assert isinstance(slow["p2"], CallTimeoutError)
    assert [slow[f"p{i}"] for i in (0, 1, 3)] == ["p0", "p1", "p3"]
    parts[3].unregister("whoami")
    missing = await hub.broadcast("whoami", "x", timeout=5)
    assert isinstance(missing["p3"], RemoteExecutionError) and missing["p3"].code == "METHOD_NOT_FOUND"


async def test_excluded_and_unlinked_nodes_are_not_called(nodes: NodesFactory, spy: list[Any]) -> None:
    hub, parts = await star(nodes, 3)
    stranger = await nodes("stranger")  # on the same broker and prefix, not linked with hub
    called: list[str] = []

    async def record(payload: Any, ctx: CallContext) -> str:
        called.append(ctx.node.node_id)
        return ctx.node.node_id

    for node in [*parts, stranger]:
        node.register("record", record)
    results = await hub.broadcast("record", None, exclude=["p1"], timeout=5)
    assert sorted(results) == ["p0", "p2"] and sorted(called) == ["p0", "p2"]


async def test_large_broadcast_goes_once_in_chunks_to_its_targets_only(nodes: NodesFactory, spy: list[Any]) -> None:
    hub, parts = await star(nodes, 4, chunk_size=256 * 1024, flow_window=1 * MiB)
    stranger = await nodes("stranger")  # same broker and prefix, not linked with hub

    async def size(payload: bytes, ctx: CallContext) -> bytes:
        return str(len(payload)).encode() + bytes(payload[:1])

    for p in parts:
        p.register("size", size, MethodOptions(serializer="raw"))
    data = b"B" * (6 * MiB)

    def received(node: Node) -> int:
        return int(node.transport.client.stats["in_bytes"])  # type: ignore[attr-defined]

    before = hub.transport.client.stats["out_bytes"]  # type: ignore[attr-defined]
    idle = {n.node_id: received(n) for n in (stranger, parts[3])}
    results = await hub.broadcast("size", data, exclude=["p3"], serializer="raw", timeout=30)
    assert results == {p.node_id: b"%dB" % len(data) for p in parts[:3]}
    sent = hub.transport.client.stats["out_bytes"] - before  # type: ignore[attr-defined]
    assert len(data) <= sent < 1.1 * len(data)  # once, not three times
    assert len(spy) == len(data) // (256 * 1024)  # each chunk once, on the transfer's own subject
    for n in (stranger, parts[3]):  # nodes it is not for get nothing of it
        assert received(n) - idle[n.node_id] < 4 * 1024
    for p in parts:  # every chunk subscription is gone again
        assert not p.transport._receiving.transfers  # type: ignore[attr-defined]


async def test_broadcast_target_that_never_subscribes_is_dropped(nodes: NodesFactory) -> None:
    hub, parts = await star(nodes, 2, chunk_size=64 * 1024, flow_window=256 * 1024, transfer_timeout=0.5)

    async def size(payload: bytes, ctx: CallContext) -> bytes:
        return str(len(payload)).encode()

    for p in parts:
        p.register("size", size, MethodOptions(serializer="raw"))

    async def deaf(source: str, transfer: int, inc: Any) -> None:
        return None  # takes the head, never joins the chunk subject

    parts[1].transport._join_chunks = deaf  # type: ignore[attr-defined]
    results = await hub.broadcast("size", b"D" * (1 * MiB), serializer="raw", timeout=10)
    assert results["p0"] == str(MiB).encode()
    assert "took no part of the broadcast payload" in str(results["p1"])


async def test_broadcast_with_interceptors_still_works(nats_server: NatsServer, nats_prefix: str) -> None:
    """With interceptors every call goes through them on its own (one publish per participant)."""
    from node_comm import InterceptorConfig

    cfg = nats_config("hub", nats_server.url, nats_prefix, interceptors=[InterceptorConfig("logging")])
    async with Node("hub", cfg) as hub:
        parts = [Node(f"p{i}", nats_config(f"p{i}", nats_server.url, nats_prefix)) for i in range(3)]
        for p in parts:
            p.register("whoami", whoami)
            await p.start()
            await p.connect("hub")
        try:
            assert await hub.broadcast("whoami", "x", timeout=5) == {"p0": "p0", "p1": "p1", "p2": "p2"}
        finally:
            for p in parts:
                await p.stop()


async def test_one_target_refusing_a_large_broadcast_fails_alone(nodes: NodesFactory) -> None:
    hub = await nodes("hub", chunk_size=64 * 1024, flow_window=256 * 1024)
    parts = [await nodes("p0"), await nodes("p1", max_receive_buffer=512 * 1024), await nodes("p2")]

    async def size(payload: bytes, ctx: CallContext) -> bytes:
        return str(len(payload)).encode()

    for p in parts:
        p.register("size", size, MethodOptions(serializer="raw"))
        await p.connect("hub")
    results = await hub.broadcast("size", b"R" * MiB, serializer="raw", timeout=10)
    assert results["p0"] == results["p2"] == str(MiB).encode()
    refused = results["p1"]
    assert isinstance(refused, RemoteExecutionError) and refused.code == "RESOURCE_EXHAUSTED"
    assert "max_receive_buffer" in str(refused)
