"""The original README's memory-mode examples as quick checks.

Runs under pytest (``python -m pytest node_comm/tests/ -v``) or as a script
(``python node_comm/tests/test_node.py``).
"""

from __future__ import annotations

import asyncio

from node_comm import (
    CallTimeoutError,
    MethodOptions,
    Node,
    NodeConfig,
    NodeNotConnectedError,
    RemoteExecutionError,
    TransportConfig,
)


def _config(node_id: str) -> NodeConfig:
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="memory"))


async def _quickstart() -> None:
    coordinator = Node("coordinator", _config("coordinator"))
    participant = Node("participant", _config("participant"))

    async def train(payload, ctx):  # type: ignore[no-untyped-def]
        return {"status": "completed", "loss": 0.01, "epochs": payload.get("epochs", 1)}

    participant.register("train", train)
    await coordinator.start()
    await participant.start()
    await coordinator.connect("participant")
    result = await coordinator.call("participant", "train", {"epochs": 10})
    assert result == {"status": "completed", "loss": 0.01, "epochs": 10}, result
    # Peers are symmetric: the participant can call back over the same connection.
    coordinator.register("report", lambda payload, ctx: {"from": ctx.source})
    assert await participant.call("coordinator", "report", None) == {"from": "participant"}
    await coordinator.stop()
    await participant.stop()


async def _broadcast_notify_pickle_errors() -> None:
    events: list[tuple[str, str]] = []
    async with Node("coordinator", _config("coordinator")) as coordinator:
        coordinator.on("connect", lambda nid, addr: events.append(("connect", nid)))
        coordinator.on("disconnect", lambda nid, reason: events.append(("disconnect", nid)))
        workers = [Node(f"w{i}", _config(f"w{i}")) for i in range(3)]
        for w in workers:
            w.register("config_update", lambda payload, ctx, w=w: (w.node_id, payload["learning_rate"]))
            w.register("process", lambda payload, ctx: sorted(payload), MethodOptions(serializer="pickle"))
            await w.start()
            await coordinator.connect(w.node_id)
        results = await coordinator.broadcast(
            method="config_update", payload={"learning_rate": 0.001}, exclude=["coordinator"]
        )
        assert results == {f"w{i}": [f"w{i}", 0.001] for i in range(3)}, results
        await workers[0].notify(target="coordinator", method="_heartbeat", payload={"status": "alive"})
        assert await coordinator.call("w1", "process", {3, 1, 2}, serializer="pickle") == [1, 2, 3]
        try:
            await coordinator.call("w1", "missing", {})
        except RemoteExecutionError as e:
            assert e.code == "METHOD_NOT_FOUND"
        else:
            raise AssertionError("expected RemoteExecutionError")
        try:
            await coordinator.call("nobody", "method", {})
        except NodeNotConnectedError as e:
            assert e.node_id == "nobody"
        else:
            raise AssertionError("expected NodeNotConnectedError")

        async def slow(payload, ctx):  # type: ignore[no-untyped-def]
            await asyncio.sleep(10)

        workers[2].register("slow", slow)
        try:
            await coordinator.call("w2", "slow", {}, timeout=0.05)
        except CallTimeoutError as e:
            assert (e.target, e.method) == ("w2", "slow")
        else:
            raise AssertionError("expected CallTimeoutError")
        for w in workers:
            await w.stop()
    assert events.count(("connect", "w0")) == 1 and events.count(("disconnect", "w0")) == 1, events


def test_quickstart() -> None:
    asyncio.run(_quickstart())


def test_broadcast_notify_pickle_errors() -> None:
    asyncio.run(_broadcast_notify_pickle_errors())


if __name__ == "__main__":
    test_quickstart()
    test_broadcast_notify_pickle_errors()
    print("memory mode: all README examples OK")
