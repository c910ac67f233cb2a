"""Faults with peers in other processes: kill -9, SIGSTOP, restart on the same port."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from conftest import grpc_config

from node_comm import ConnectionLostError, HeartbeatConfig, NodeNotConnectedError
from node_comm_grpc.config import ReconnectConfig


async def test_peer_killed_mid_call_fails_at_once(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes("a")
    disconnects: list[str] = []
    a.on("disconnect", lambda n, reason: disconnects.append(n))
    await a.connect("b", peer.address)
    assert await a.call("b", "echo", "hi") == "hi"
    call = asyncio.ensure_future(a.call("b", "hang", None, timeout=30))
    await asyncio.sleep(0.1)  # the call is in flight on the peer
    t0 = time.monotonic()
    await peer.kill()
    with pytest.raises(ConnectionLostError):
        await call
    assert time.monotonic() - t0 < 3.0
    # calls while it is down fail fast
    t1 = time.monotonic()
    with pytest.raises(NodeNotConnectedError):
        await a.call("b", "echo", "again", timeout=30)
    assert time.monotonic() - t1 < 0.5
    await asyncio.sleep(0.3)  # any duplicate disconnect would show up here
    assert disconnects == ["b"]


async def test_frozen_peer_detected_by_heartbeats(nodes, spawn) -> None:
    peer = await spawn("b")
    interval, timeout = 0.2, 0.6
    a = await nodes("a", grpc_config("a", heartbeat=HeartbeatConfig(True, interval, timeout)))
    gone = asyncio.Event()
    reasons: list[str] = []
    a.on("disconnect", lambda n, reason: (reasons.append(reason), gone.set()))
    await a.connect("b", peer.address)
    assert await a.call("b", "echo", 1) == 1
    pending = asyncio.ensure_future(a.call("b", "hang", None, timeout=30))
    peer.signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(gone.wait(), 5)
        elapsed = time.monotonic() - t0
        assert elapsed < interval + timeout + 0.5, elapsed
        assert "heartbeat" in reasons[0]
        with pytest.raises(ConnectionLostError):
            await pending
    finally:
        peer.signal(signal.SIGCONT)


async def test_peer_restart_on_same_port_reconnects_by_itself(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes("a", grpc_config("a", reconnect=ReconnectConfig(initial_backoff=0.05, max_backoff=0.3)))
    connected = asyncio.Event()
    disconnected = asyncio.Event()
    events: list[str] = []
    a.on("connect", lambda n, addr: (events.append("connect"), connected.set()))
    a.on("disconnect", lambda n, reason: (events.append("disconnect"), disconnected.set()))
    await a.connect("b", peer.address)
    assert await a.call("b", "echo", 1) == 1
    connected.clear()
    await peer.kill()
    await asyncio.wait_for(disconnected.wait(), 5)
    await spawn("b", peer.port)
    await asyncio.wait_for(connected.wait(), 15)
    assert await a.call("b", "echo", 2) == 2
    assert events == ["connect", "disconnect", "connect"]


async def test_peer_graceful_stop_tells_why_and_is_not_redialled(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes("a")
    gone = asyncio.Event()
    reasons: list[str] = []
    a.on("disconnect", lambda n, reason: (reasons.append(reason), gone.set()))
    await a.connect("b", peer.address)
    peer.signal(signal.SIGTERM)
    await asyncio.wait_for(gone.wait(), 10)
    assert reasons == ["node 'b' stopped"]
    assert await asyncio.wait_for(peer.proc.wait(), 10) == 0
    assert a.transport._redials == {}  # type: ignore[attr-defined]


async def test_thawed_peer_is_redialled_after_heartbeat_timeout(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes(
        "a",
        grpc_config(
            "a",
            heartbeat=HeartbeatConfig(True, 0.2, 0.6),
            reconnect=ReconnectConfig(initial_backoff=0.05, max_backoff=0.3),
        ),
    )
    connected = asyncio.Event()
    gone = asyncio.Event()
    a.on("connect", lambda n, addr: connected.set())
    a.on("disconnect", lambda n, reason: gone.set())
    await a.connect("b", peer.address)
    connected.clear()
    peer.signal(signal.SIGSTOP)
    try:
        await asyncio.wait_for(gone.wait(), 5)
    finally:
        peer.signal(signal.SIGCONT)
    await asyncio.wait_for(connected.wait(), 10)
    assert await a.call("b", "echo", "back") == "back"


async def test_aggressive_keepalive_settings_keep_an_idle_link_up(nodes) -> None:
    # Keepalive of 0.2 s on both sides of an idle stream must not make either side drop the link
    # (the server accepts pings down to 1 s apart and never answers them with too_many_pings).
    b = await nodes("b", grpc_config("b", keepalive_time=0.2, keepalive_timeout=5.0))
    a = await nodes("a", grpc_config("a", keepalive_time=0.2, keepalive_timeout=5.0))
    b.register("echo", lambda p, ctx: p)
    drops: list[str] = []
    a.on("disconnect", lambda n, reason: drops.append(reason))
    await a.connect("b", b.address)
    await asyncio.sleep(1.0)  # idle on purpose: keepalive pings are what is being tested
    assert drops == []
    assert await a.call("b", "echo", 1) == 1


async def test_slow_receiver_slows_the_sender(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes("a", grpc_config("a", send_queue_bytes=2 * 1024 * 1024))
    await a.connect("b", peer.address)
    peer.signal(signal.SIGSTOP)  # b reads nothing any more
    blob = b"z" * (1024 * 1024)
    accepted = 0
    try:
        for _ in range(512):
            try:
                await asyncio.wait_for(a.notify("b", "echo", blob, serializer="pickle"), 0.5)
            except asyncio.TimeoutError:
                break
            accepted += len(blob)
        else:
            pytest.fail("512 MiB were accepted for a peer that reads nothing: no back-pressure")
    finally:
        peer.signal(signal.SIGCONT)
    # what was accepted is bounded by the queue plus gRPC/socket buffers, not by what was offered
    assert 0 < accepted < 128 * 1024 * 1024


async def test_dialling_peer_killed_mid_call_fails_at_once_on_the_server(nodes, spawn) -> None:
    a = await nodes("a")
    joined = asyncio.Event()
    disconnects: list[str] = []
    a.on("connect", lambda n, addr: joined.set())
    a.on("disconnect", lambda n, reason: disconnects.append(n))
    peer = await spawn("b", "none", "--connect", "a", a.address)  # dial-only participant
    await asyncio.wait_for(joined.wait(), 10)
    assert await a.call("b", "echo", "hi") == "hi"
    call = asyncio.ensure_future(a.call("b", "hang", None, timeout=30))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await peer.kill()
    with pytest.raises(ConnectionLostError):
        await call
    assert time.monotonic() - t0 < 3.0
    await asyncio.sleep(0.3)  # any duplicate disconnect would show up here
    assert disconnects == ["b"]


async def test_redialling_gives_up_after_its_time_limit_and_says_so(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes("a", grpc_config("a", port=None, reconnect=ReconnectConfig(give_up_after=0.5, max_backoff=0.2)))
    gave_up: list[tuple[str, str]] = []
    done = asyncio.Event()

    def on_gave_up(node_id: str, reason: str) -> None:
        gave_up.append((node_id, reason))
        done.set()

    a.on("gave_up", on_gave_up)
    await a.connect("b", peer.address)
    await peer.kill()  # nothing will listen there again
    await asyncio.wait_for(done.wait(), 10)
    assert gave_up[0][0] == "b" and "give_up_after" in gave_up[0][1]
    assert not a.is_connected("b")
