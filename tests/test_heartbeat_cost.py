"""Heartbeats cost nothing on a busy link: a peer heard from within the interval is not pinged,
and of two nodes with heartbeats on, the one that hears the other's pings stops pinging."""

from __future__ import annotations

import asyncio

from node_comm import HeartbeatConfig, Message, MessageType, Node, NodeConfig

HB = HeartbeatConfig(enabled=True, interval=0.05, timeout=1.0)


def count_heartbeats(node: Node) -> list[int]:
    sent = [0]
    send = node.transport.send

    async def counting(msg: Message) -> None:
        if msg.type is MessageType.HEARTBEAT:
            sent[0] += 1
        await send(msg)

    node.transport.send = counting  # type: ignore[method-assign]
    return sent


async def test_a_busy_link_carries_no_heartbeats() -> None:
    a = Node("a", NodeConfig(node_id="a", heartbeat=HB))
    b = Node("b")
    b.register("echo", lambda p, ctx: p)
    async with a, b:
        await a.connect("b")
        pings = count_heartbeats(a)
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.6  # twelve heartbeat intervals of calls back to back
        while loop.time() < end:
            assert await a.call("b", "echo", 1) == 1
        assert pings[0] <= 2  # at most the edges of the busy period
        quiet = asyncio.Event()
        loop.call_later(0.3, quiet.set)
        await quiet.wait()
        assert pings[0] >= 3  # an idle link is pinged again


async def test_of_two_nodes_pinging_each_other_one_stops() -> None:
    a = Node("a", NodeConfig(node_id="a", heartbeat=HB))
    b = Node("b", NodeConfig(node_id="b", heartbeat=HeartbeatConfig(enabled=True, interval=0.08, timeout=1.0)))
    async with a, b:
        await a.connect("b")
        pings_a, pings_b = count_heartbeats(a), count_heartbeats(b)
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.8, done.set)
        await done.wait()
        assert a.is_connected("b") and b.is_connected("a")
        assert pings_a[0] >= 5
        assert pings_b[0] <= 2, "b hears a's pings within its interval: it should not ping too"
