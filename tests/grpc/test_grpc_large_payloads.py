"""Large payloads between processes: nobody is dropped while they are (de)serialized and sent, and
small calls issued meanwhile are answered first."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from conftest import grpc_config
from peer import SlowPickleSerializer

from node_comm import HeartbeatConfig, Node

MiB = 1024 * 1024
TOKEN = "large-payload-test-secret"  # pickle methods may require an authenticated peer


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _big_then_small(a: Node, method: str, big: Any, serializer: str) -> list[str]:
    """Start a big call, then a small one while it is under way; the order they completed in."""
    order: list[str] = []

    async def timed(name: str, call: Any) -> Any:
        result = await call
        order.append(name)
        return result

    big_call = asyncio.ensure_future(timed("big", a.call("b", method, big, serializer=serializer, timeout=60)))
    await asyncio.sleep(0)  # the big call has started: encoding or sending
    assert await timed("small", a.call("b", "echo", "ping", timeout=30)) == "ping"
    assert await big_call == big
    return order


async def _heartbeat_pair(nodes: Any, spawn: Any) -> tuple[Node, list[str]]:
    peer = await spawn("b", 0, "--heartbeat", "0.5", "2", "--token", TOKEN)
    a = await nodes("a", grpc_config("a", token=TOKEN, heartbeat=HeartbeatConfig(True, 0.5, 2.0)))
    a.serializers.register(SlowPickleSerializer())
    dropped: list[str] = []
    a.on("disconnect", lambda n, reason: dropped.append(f"{n}: {reason}"))
    await a.connect("b", peer.address)
    return a, dropped


@pytest.mark.skipif(_available_memory() < 4 * 1024 * MiB, reason="needs 4 GiB of available memory")
async def test_200mb_pickle_payloads_drop_nobody_and_small_calls_pass_them(nodes, spawn) -> None:
    a, dropped = await _heartbeat_pair(nodes, spawn)
    big = os.urandom(MiB) * 200
    for _ in range(3):
        assert await _big_then_small(a, "echo_pickle", big, "pickle") == ["small", "big"]
        assert dropped == []
    assert a.is_connected("b")


async def test_a_serializer_slower_than_the_heartbeat_timeout_drops_nobody(nodes, spawn) -> None:
    # Decoding takes longer than the heartbeat timeout on both sides (the peer's request decode,
    # then the caller's result decode): on the event loop, either side would stop answering pings.
    a, dropped = await _heartbeat_pair(nodes, spawn)
    assert await _big_then_small(a, "echo_slow", os.urandom(8 * MiB), "slowpickle") == ["small", "big"]
    assert dropped == []
    assert a.is_connected("b")
