"""Large payloads are (de)serialized off the event loop; small ones inline; liveness counts every
message. A gated serializer holds a payload's encode or decode in its worker thread until the test
releases it, so "the loop kept serving meanwhile" is checked by events, not by timing."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from node_comm import CallContext, CallTimeoutError, HeartbeatConfig, Message, MessageType, MethodOptions, Node
from node_comm._offload import looks_large
from node_comm.serializer import Serializer
from tests.conftest import make_config

WAIT = 5.0
THRESHOLD = 1024
BIG = b"x" * (4 * THRESHOLD)


class GatedSerializer(Serializer):
    """Bytes in, bytes out. With ``hold`` set, each encode/decode of a payload of ``THRESHOLD``
    bytes or more signals ``entered`` and blocks until the test calls ``gate.release()``; records
    the threads it ran in."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.hold = ""  # "serialize", "deserialize" or "" (never hold)
        self.entered: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.threads: list[tuple[str, int, str]] = []

    @property
    def name(self) -> str:
        return "gated"

    def _pass(self, what: str, data: bytes) -> bytes:
        self.threads.append((what, len(data), threading.current_thread().name))
        if self.hold == what and len(data) >= THRESHOLD:
            assert self.loop is not None and self.entered is not None
            self.loop.call_soon_threadsafe(self.entered.set)
            if not self.gate.acquire(timeout=WAIT):
                raise RuntimeError("gate never opened")
        return bytes(data)

    def serialize(self, obj: Any) -> bytes:
        return self._pass("serialize", obj)

    def deserialize(self, data: bytes) -> Any:
        return self._pass("deserialize", data)

    def arm(self, what: str) -> asyncio.Event:
        self.loop = asyncio.get_running_loop()
        self.entered = asyncio.Event()
        self.hold = what
        return self.entered


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    made: list[Node] = []

    async def make(node_id: str, **overrides: Any) -> Node:
        overrides.setdefault("offload_threshold", THRESHOLD)
        node = Node(node_id, make_config("memory", node_id, **overrides))
        await node.start()
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop(grace=0)


async def _gated_pair(nodes: Callable[..., Awaitable[Node]], **b_overrides: Any) -> tuple[Node, Node, GatedSerializer]:
    a, b = await nodes("a"), await nodes("b", **b_overrides)
    gated = GatedSerializer()
    a.serializers.register(gated)
    b.serializers.register(gated)

    async def big(payload: bytes, ctx: CallContext) -> bytes:
        return payload

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    b.register("big", big, MethodOptions(serializer="gated"))
    b.register("echo", echo)
    await a.connect("b")
    return a, b, gated


@pytest.mark.parametrize("step", ["serialize", "deserialize"])
async def test_small_calls_pass_a_large_payload_held_in_its_worker_thread(nodes, step: str) -> None:
    # "serialize" holds the caller's request encode, then b's result encode; "deserialize" holds
    # b's request decode, then the caller's result decode: all four run off the loop.
    a, _b, gated = await _gated_pair(nodes)
    entered = gated.arm(step)
    big_call = asyncio.ensure_future(a.call("b", "big", BIG, serializer="gated", timeout=2 * WAIT))
    for _ in range(2):  # request, then result
        await asyncio.wait_for(entered.wait(), WAIT)
        entered.clear()
        # The loop is free while the big payload is held: a small call completes meanwhile.
        assert await asyncio.wait_for(a.call("b", "echo", "small"), WAIT) == "small"
        assert not big_call.done()
        gated.gate.release()
    assert await asyncio.wait_for(big_call, WAIT) == BIG
    big_steps = [t for t in gated.threads if t[1] >= THRESHOLD]
    assert len(big_steps) == 4  # request encode and decode, result encode and decode
    assert all(name.startswith("node-comm-codec-") for _, _, name in big_steps), big_steps


@pytest.mark.parametrize("how", ["notify", "broadcast"])
async def test_notify_and_broadcast_encode_large_payloads_off_the_loop(nodes, how: str) -> None:
    a, b, gated = await _gated_pair(nodes)
    got = asyncio.Event()
    b.register("sink", lambda payload, ctx: got.set() or b"ok", MethodOptions(serializer="gated"))
    entered = gated.arm("serialize")
    if how == "notify":
        sending = asyncio.ensure_future(a.notify("b", "sink", BIG, serializer="gated"))
    else:
        sending = asyncio.ensure_future(a.broadcast("sink", BIG, serializer="gated", timeout=2 * WAIT))
    await asyncio.wait_for(entered.wait(), WAIT)  # the caller's encode is held in its thread
    assert await asyncio.wait_for(a.call("b", "echo", "small"), WAIT) == "small"
    assert not sending.done()
    gated.hold = ""
    gated.gate.release()
    result = await asyncio.wait_for(sending, WAIT)
    await asyncio.wait_for(got.wait(), WAIT)
    assert result == (None if how == "notify" else {"b": b"ok"})
    assert gated.threads[0][2].startswith("node-comm-codec-a")


async def test_small_payloads_stay_on_the_loop_thread(nodes) -> None:
    a, _b, gated = await _gated_pair(nodes)
    assert await a.call("b", "big", b"tiny", serializer="gated") == b"tiny"
    assert [t[2] for t in gated.threads] == [threading.current_thread().name] * 4


async def test_cancelled_call_does_not_leak_its_decode(nodes) -> None:
    # One inbound slot: if the cancelled call's decode held it, the next call would be refused.
    a, b, gated = await _gated_pair(nodes, max_concurrent_calls_per_peer=1)
    ran: list[int] = []

    async def count(payload: bytes, ctx: CallContext) -> bytes:
        ran.append(len(payload))
        return b"%d" % len(payload)

    b.register("count", count, MethodOptions(serializer="gated"))
    entered = gated.arm("deserialize")
    with pytest.raises(CallTimeoutError):
        await a.call("b", "count", BIG, serializer="gated", timeout=0.2)  # held in b's decode
    assert entered.is_set()
    # Loop turns (no I/O in memory mode) for the CANCEL task to run, b's task to take the
    # cancellation and its done callback to free the slot.
    for _ in range(5):
        await asyncio.sleep(0)
    # The caller's CANCEL freed b's slot while the decode is still held in its thread.
    gated.hold = ""
    assert await asyncio.wait_for(a.call("b", "count", b"small", serializer="gated"), WAIT) == b"5"
    gated.gate.release()  # the abandoned decode finishes; its result is dropped, its handler never runs
    assert await asyncio.wait_for(a.call("b", "count", BIG, serializer="gated"), WAIT) == b"%d" % len(BIG)
    assert ran == [5, len(BIG)]


async def test_sync_handlers_filling_the_default_executor_do_not_starve_decoding(nodes) -> None:
    a, b, _ = await _gated_pair(nodes)
    loop = asyncio.get_running_loop()
    workers = min(32, (os.cpu_count() or 1) + 4)  # the default executor's size
    release = threading.Event()
    all_busy = asyncio.Event()
    started = itertools.count(1)

    def blocking(payload: Any, ctx: CallContext) -> str:
        if next(started) == workers:
            loop.call_soon_threadsafe(all_busy.set)
        release.wait(WAIT)
        return "done"

    b.register("blocking", blocking)
    blocked = [asyncio.ensure_future(a.call("b", "blocking", None, timeout=2 * WAIT)) for _ in range(workers + 4)]
    try:
        await asyncio.wait_for(all_busy.wait(), WAIT)  # every default worker is blocked now
        assert await asyncio.wait_for(a.call("b", "big", BIG, serializer="gated"), WAIT) == BIG
    finally:
        release.set()
        await asyncio.gather(*blocked, return_exceptions=True)


async def test_liveness_counts_every_message_not_only_heartbeats(nodes) -> None:
    # b never answers a heartbeat, but keeps sending notifies: a must not drop it.
    a = await nodes("a", heartbeat=HeartbeatConfig(enabled=True, interval=0.1, timeout=1.0))
    b = await nodes("b")
    host = b.transport.host
    deliver = host.deliver

    def deaf(message: Message) -> None:
        if message.type is not MessageType.HEARTBEAT:
            deliver(message)

    host.deliver = deaf  # type: ignore[method-assign]
    ticks = 0
    enough = asyncio.Event()

    def tick(payload: object, ctx: object) -> None:
        nonlocal ticks
        ticks += 1
        if ticks >= 30:  # 1.5 s of chatter, past a's 1 s timeout
            enough.set()

    a.register("tick", tick)
    dropped: list[str] = []
    a.on("disconnect", lambda n, reason: dropped.append(reason))
    await a.connect("b")

    async def chatter() -> None:
        while True:
            await b.notify("a", "tick")
            await asyncio.sleep(0.05)

    talker = asyncio.ensure_future(chatter())
    try:
        await asyncio.wait_for(enough.wait(), WAIT)
    finally:
        talker.cancel()
    assert dropped == []
    assert a.is_connected("b")


def test_looks_large_estimates_common_payloads() -> None:
    t = 1024 * 1024
    assert not looks_large({"msg": "hello", "i": 1}, t)
    assert not looks_large("x" * 100, t)
    assert looks_large(b"x" * t, t)
    assert looks_large(bytearray(t), t)
    assert looks_large(memoryview(bytes(t)), t)
    assert looks_large({"weights": [b"x" * (t // 2), b"y" * (t // 2)]}, t)
    assert looks_large(list(range(t // 4)), t)  # 8 bytes per element at least
    assert looks_large({"layers": {f"l{i}": "w" * (t // 8) for i in range(10)}}, t)
    assert not looks_large(list(range(100)), t)
    assert looks_large({"round": 3, "model": {"w": b"x" * t}}, t)  # nested under a small dict
    assert looks_large(["x" * t], t)
    assert looks_large((1, memoryview(bytes(t))), t)

    class Array:
        nbytes = t

    assert looks_large({"layer": Array()}, t)
    assert not looks_large({"layer": object(), "n": 1}, t)  # cannot see inside: small
    assert looks_large(b"", 0)
    assert looks_large({"a": 1}, 0)
