"""The original README's gRPC-mode example as a quick check, on free loopback ports.

Runs under pytest (``python -m pytest node_comm/tests/ -v``) or as a script
(``python node_comm/tests/test_grpc.py``).
"""

from __future__ import annotations

import asyncio

from node_comm import GrpcTransportConfig, Node, NodeConfig, TransportConfig


def _config(node_id: str, port: int | None) -> NodeConfig:
    grpc = GrpcTransportConfig(host="127.0.0.1", port=port)
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="grpc", grpc=grpc))


async def _echo_both_ways() -> None:
    node1 = Node("node_1", _config("node_1", 0))
    node2 = Node("node_2", _config("node_2", 0))

    async def echo(payload, ctx):  # type: ignore[no-untyped-def]
        return {"echo": payload, "from": ctx.source}

    node1.register("echo", echo)
    node2.register("echo", echo)
    await node1.start()
    await node2.start()
    try:
        await node1.connect("node_2", node2.address)
        assert await node1.call("node_2", "echo", {"msg": "hello"}) == {"echo": {"msg": "hello"}, "from": "node_1"}
        # Symmetric: node_2 calls back over the connection node_1 dialled.
        assert await node2.call("node_1", "echo", [1, 2]) == {"echo": [1, 2], "from": "node_2"}
    finally:
        await node1.stop()
        await node2.stop()


async def _dial_only_participant() -> None:
    coordinator = Node("coordinator", _config("coordinator", 0))
    participant = Node("participant", _config("participant", None))  # behind NAT: no listening port
    participant.register("train", lambda payload, ctx: {"loss": 0.01, "epochs": payload["epochs"]})
    await coordinator.start()
    await participant.start()
    try:
        assert coordinator.address is not None
        await participant.connect("coordinator", coordinator.address)
        assert await coordinator.call("participant", "train", {"epochs": 3}) == {"loss": 0.01, "epochs": 3}
    finally:
        await participant.stop()
        await coordinator.stop()


def test_echo_both_ways() -> None:
    asyncio.run(_echo_both_ways())


def test_dial_only_participant() -> None:
    asyncio.run(_dial_only_participant())


if __name__ == "__main__":
    test_echo_both_ways()
    test_dial_only_participant()
    print("gRPC mode: all README examples OK")
