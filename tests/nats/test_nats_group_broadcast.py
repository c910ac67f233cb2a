"""Small broadcasts published once per broadcast group: every target still gets its own call id and
its own result, error or timeout; a node acts only on a broadcast that names it, from a peer it is
linked to; garbage on a group subject is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

from node_comm import CallContext, CallTimeoutError, NodeNotConnectedError, RemoteExecutionError
from node_comm_nats.wire import BCAST, MAX_BCAST_TARGETS, encode
from tests.natsd import NatsServer

from .conftest import NodesFactory
from .test_nats_broadcast import star


async def test_one_publish_per_group_and_results_per_target(nodes: NodesFactory) -> None:
    hub, parts = await star(nodes, 12, broadcast_groups=1, presence_interval=60)
    stats = hub.transport.client.stats  # type: ignore[attr-defined]
    before = stats["out_msgs"]
    results = await hub.broadcast("whoami", "hi", timeout=5)
    assert results == {p.node_id: p.node_id for p in parts}
    assert stats["out_msgs"] - before == 1  # one message for 12 targets
    failed = await hub.broadcast("whoami", "fail", timeout=5)
    assert isinstance(failed["p1"], RemoteExecutionError) and failed["p1"].code == "HANDLER_ERROR"
    assert all(failed[p.node_id] == p.node_id for p in parts if p.node_id != "p1")
    slow = await hub.broadcast("whoami", "hang", timeout=0.5)
    assert isinstance(slow["p2"], CallTimeoutError)
    assert all(slow[p.node_id] == p.node_id for p in parts if p.node_id != "p2")


async def test_only_named_and_linked_nodes_act(nodes: NodesFactory) -> None:
    hub, parts = await star(nodes, 4, broadcast_groups=1, presence_interval=60)
    stranger = await nodes("stranger", broadcast_groups=1)  # same group subject, not linked to hub
    called: list[str] = []

    async def record(payload: Any, ctx: CallContext) -> str:
        called.append(ctx.node.node_id)
        return ctx.node.node_id

    for node in [*parts, stranger]:
        node.register("record", record)
    results = await hub.broadcast("record", None, exclude=["p1"], timeout=5)
    assert sorted(results) == ["p0", "p2", "p3"] and sorted(called) == ["p0", "p2", "p3"]
    called.clear()
    out = await hub.broadcast("record", None, targets=["p0", "p2", "stranger"], timeout=5)
    assert isinstance(out["stranger"], NodeNotConnectedError) and sorted(called) == ["p0", "p2"]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"to": "p0"},
        {"to": [["p0"]]},
        {"to": [["p0", "7"]]},
        {"to": [["p0", -1]]},
        {"to": [["p0", 2**64]]},
        {"to": [["p0", True]]},
        {"to": [["x", 1]] * (MAX_BCAST_TARGETS + 1) + [["p0", 1]]},
        {"to": [["p0", 1]], "md": {"k": 1}},
    ],
    ids=["none", "str", "short", "str-id", "negative", "huge", "bool", "too-long", "bad-metadata"],
)
async def test_garbage_broadcasts_are_dropped(
    nodes: NodesFactory, nats_server: NatsServer, nats_prefix: str, extra: dict[str, Any]
) -> None:
    hub, parts = await star(nodes, 2, broadcast_groups=1, presence_interval=60)
    p0 = parts[0]
    called = asyncio.Event()
    valid = asyncio.Event()

    async def record(payload: Any, ctx: CallContext) -> None:
        (valid if payload == "ok" else called).set()

    p0.register("record", record)
    raw = await nats.connect(nats_server.url)
    try:
        subject = f"{nats_prefix}.bcast.hub.0"  # speaks as the linked hub (no broker permissions here)
        bad = [
            encode(BCAST, method="record", serializer="json", size=0, extra=extra, payload=b'"bad"'),
            b"\x00" * 10 + b'"p0"',
            encode(BCAST, method="record", serializer="json", size=2, extra={"to": [["p0", 1]]}, payload=b'"bad"'),
        ]
        for data in bad:
            await raw.publish(subject, data)
        # Named, but from a node p0 is not linked to: ignored too.
        good = encode(BCAST, method="record", serializer="json", size=4, extra={"to": [["p0", 0]]}, payload=b'"ok"')
        await raw.publish(f"{nats_prefix}.bcast.stranger.0", good)
        await raw.publish(f"{nats_prefix}.bcast.{'x' * 300}.0", good)
        await raw.publish(subject, good)  # the one valid frame: proves the others were delivered too
        await raw.flush()
        await asyncio.wait_for(valid.wait(), 5)
    finally:
        await raw.close()
    assert not called.is_set()
    assert await hub.call("p0", "whoami", "still") == "p0"


async def test_sparse_groups_get_their_own_message(nodes: NodesFactory) -> None:
    hub, _ = await star(nodes, 6, broadcast_groups=1, presence_interval=60)
    stats = hub.transport.client.stats  # type: ignore[attr-defined]
    before = stats["out_msgs"]
    out = await hub.broadcast("whoami", "hi", targets=["p0", "p1"], timeout=5)  # 2 of 6: not worth it
    assert out == {"p0": "p0", "p1": "p1"} and stats["out_msgs"] - before == 2
