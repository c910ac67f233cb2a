"""Faults with real processes and real servers: a participant killed mid-call, the broker restarted,
a cluster member dying, and a broadcast to 200 participants in 4 processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node_comm import ConnectionLostError, NodeNotConnectedError, RemoteExecutionError
from tests.natsd import NatsServer, cluster

from .conftest import NodesFactory

MiB = 1024 * 1024


def events(node: Any) -> tuple[list[str], list[str], asyncio.Event, asyncio.Event]:
    """Connect and disconnect events of ``node``, with an event set by each."""
    ups: list[str] = []
    downs: list[str] = []
    up, down = asyncio.Event(), asyncio.Event()
    node.on("connect", lambda n, addr: (ups.append(n), up.set()))
    node.on("disconnect", lambda n, reason: (downs.append(n), down.set()))
    return ups, downs, up, down


async def test_participant_killed_mid_call_fails_at_once(
    nodes: NodesFactory, spawn: Any, nats_server: NatsServer
) -> None:
    peer = await spawn(nats_server.url, "b")
    a = await nodes("a", presence_interval=0.2)
    _, downs, _, _ = events(a)
    await a.connect("b")
    assert await a.call("b", "echo", "hi") == "hi"
    call = asyncio.ensure_future(a.call("b", "hang", None, timeout=30))
    await asyncio.sleep(0.1)  # the call is in flight on the peer
    t0 = time.monotonic()
    await peer.kill()
    with pytest.raises(ConnectionLostError, match="is gone"):
        await call
    assert time.monotonic() - t0 < 2.0
    t1 = time.monotonic()
    with pytest.raises(NodeNotConnectedError):  # while it is down: at once
        await a.call("b", "echo", "again", timeout=30)
    assert time.monotonic() - t1 < 0.5
    assert downs == ["b"]
    # It comes back under the same id: a redials it (it opened the link) and connect fires again.
    ups, _, up, _ = events(a)
    await spawn(nats_server.url, "b")
    await asyncio.wait_for(up.wait(), 10)
    assert ups == ["b"] and await a.call("b", "echo", "back") == "back"


async def test_broker_restart_fails_calls_in_flight_then_nodes_reconnect(
    nodes: NodesFactory, own_server: NatsServer
) -> None:
    a = await nodes("a", servers=own_server.url, reconnect_time_wait=0.2)
    b = await nodes("b", servers=own_server.url, reconnect_time_wait=0.2)
    started = asyncio.Event()

    async def hang(payload: Any, ctx: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async def echo(payload: Any, ctx: Any) -> Any:
        return payload

    b.register("hang", hang)
    b.register("echo", echo)
    a_ups, a_downs, a_up, _ = events(a)
    b_ups, b_downs, b_up, _ = events(b)
    await a.connect("b")
    call = asyncio.ensure_future(a.call("b", "hang", None, timeout=30))
    await asyncio.wait_for(started.wait(), 5)
    a_up.clear()
    b_up.clear()
    t0 = time.monotonic()
    own_server.kill()
    with pytest.raises(ConnectionLostError, match="lost its connection to the NATS server"):
        await call
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(NodeNotConnectedError):
        await a.call("b", "echo", 1)
    own_server.start()
    await asyncio.wait_for(asyncio.gather(a_up.wait(), b_up.wait()), 15)
    assert await a.call("b", "echo", "after") == "after"
    assert await b.call("a", "_heartbeat", None) == {"status": "alive", "node_id": "a"}
    assert (a_downs, b_downs) == (["b"], ["a"])  # once each
    assert (a_ups, b_ups) == (["b", "b"], ["a", "a"])  # connect fired again


async def test_cluster_member_dies_and_nodes_fail_over(nodes: NodesFactory) -> None:
    servers = cluster(3)
    try:
        s0, s1, s2 = servers
        a = await nodes("a", servers=[s0.url], reconnect_time_wait=0.2)  # nats-py also learns of s1, s2
        b = await nodes("b", servers=[s1.url, s2.url], reconnect_time_wait=0.2)

        async def where(payload: Any, ctx: Any) -> str:
            url = ctx.node.transport.client.connected_url
            return str(url.port)

        b.register("where", where)
        await a.connect("b")  # a on server 0 finds b on server 1 or 2 through the routes
        first = await a.call("b", "where", None)
        assert first in (str(s1.port), str(s2.port))
        ups, downs, up, _ = events(a)
        next(s for s in servers if str(s.port) == first).kill()  # b's server dies: b moves on
        await asyncio.wait_for(up.wait(), 15)  # and a re-opens the link
        assert downs == ["b"] and ups == ["b"]
        now = await a.call("b", "where", None)
        assert now != first and now in {str(s.port) for s in servers}
    finally:
        for s in servers:
            s.stop()


async def test_broadcast_to_200_participants_in_4_processes(spawn: Any, nodes: NodesFactory) -> None:
    server = NatsServer(monitor=True).start()
    try:
        hub = await nodes("hub", servers=server.url)
        joined = asyncio.Event()
        hub.on("connect", lambda n, addr: joined.set() if len(hub.peers) == 200 else None)
        for proc in range(4):
            ids = [f"p{proc}_{i}" for i in range(50)]
            await spawn(server.url, *ids, connect="hub", fail="p2_7")
        await asyncio.wait_for(joined.wait(), 30)
        t0 = time.monotonic()
        results = await hub.broadcast("work", None, timeout=20)
        elapsed = time.monotonic() - t0
        assert len(results) == 200
        assert isinstance(results["p2_7"], RemoteExecutionError) and "fails on purpose" in str(results["p2_7"])
        assert all(results[n] == n for n in results if n != "p2_7")
        assert elapsed < 5.0, elapsed
    finally:
        server.stop()


async def test_16_mib_broadcast_leaves_the_coordinator_about_once(spawn: Any, nodes: NodesFactory) -> None:
    """The coordinator's connection carries a 16 MiB broadcast to 8 participants about once, not 8
    times (measured by the server's /connz counters)."""
    server = NatsServer(monitor=True).start()
    try:
        hub = await nodes("hub", servers=server.url)
        joined = asyncio.Event()
        hub.on("connect", lambda n, addr: joined.set() if len(hub.peers) == 8 else None)
        for proc in range(2):
            await spawn(server.url, *[f"p{proc}_{i}" for i in range(4)], connect="hub")
        await asyncio.wait_for(joined.wait(), 30)
        before = server.connections()["node_comm:hub"]["in_bytes"]
        data = b"M" * (16 * MiB)
        results = await hub.broadcast("size", data, timeout=60, serializer="raw")
        assert results == {n: str(len(data)).encode() for n in hub.peers}
        sent = server.connections()["node_comm:hub"]["in_bytes"] - before
        assert len(data) <= sent < 1.1 * len(data), sent
    finally:
        server.stop()
