"""Payloads of any size over NATS: chunks with flow control, interleaved with small calls, a bounded
node-wide receive buffer, and hostile or stalled transfers dropped without harm."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from node_comm import (
    CallContext,
    MethodOptions,
    NodeCommError,
    PayloadTooLargeError,
    RemoteExecutionError,
)
from node_comm_nats.wire import BATCH, CHUNK, CHUNK_ACK, HELLO, Frame, decode, encode, split_batch
from tests.natsd import NatsServer

from .conftest import NodesFactory

RAW = MethodOptions(serializer="raw")
MiB = 1024 * 1024
SMALL = {"chunk_size": 64 * 1024, "flow_window": 256 * 1024}


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``cond()`` holds (state with no event to wait on: a transfer dropped by a sweep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def echo_len(payload: bytes, ctx: CallContext) -> bytes:
    return payload[:4] + len(payload).to_bytes(8, "big")


async def test_large_payload_round_trip_in_chunks(nodes: NodesFactory) -> None:
    a = await nodes("a", **SMALL)
    b = await nodes("b", **SMALL)

    async def echo(payload: bytes, ctx: CallContext) -> bytes:
        return bytes(payload)

    b.register("echo", echo, RAW)
    await a.connect("b")
    data = bytes(range(256)) * (12 * 4096)  # 12 MiB: 192 chunks, 48 flow windows
    published = a.transport.client.stats["out_msgs"]  # type: ignore[attr-defined]
    assert await a.call("b", "echo", data, serializer="raw", timeout=60) == data
    assert a.transport.client.stats["out_msgs"] - published >= len(data) // SMALL["chunk_size"]  # type: ignore[attr-defined]
    assert b.transport._receiving.buffered == 0  # type: ignore[attr-defined]


async def test_small_calls_interleave_with_a_large_transfer(nodes: NodesFactory) -> None:
    a = await nodes("a", **SMALL)
    b = await nodes("b", **SMALL)
    b.register("len", echo_len, RAW)
    await a.connect("b")
    done: list[str] = []

    async def big() -> None:
        await a.call("b", "len", b"x" * (16 * MiB), serializer="raw", timeout=60)
        done.append("big")

    async def small(i: int) -> None:
        assert await a.call("b", "len", b"s%03d" % i, serializer="raw") == b"s%03d" % i + (4).to_bytes(8, "big")
        done.append("small")

    task = asyncio.create_task(big())
    await asyncio.sleep(0)  # the big call has started sending its chunks
    await asyncio.gather(*(small(i) for i in range(20)))
    await task
    assert done.index("big") == 20, done  # every small call finished before the big one


async def test_receive_budget_refuses_with_resource_exhausted(nodes: NodesFactory) -> None:
    a = await nodes("a", **SMALL)
    b = await nodes("b", max_receive_buffer=1 * MiB, **SMALL)
    b.register("len", echo_len, RAW)
    await a.connect("b")
    with pytest.raises(RemoteExecutionError) as info:
        await a.call("b", "len", b"y" * (2 * MiB), serializer="raw", timeout=10)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert "max_receive_buffer" in str(info.value)
    assert await a.call("b", "len", b"z" * (512 * 1024), serializer="raw") == b"zzzz" + (512 * 1024).to_bytes(8, "big")
    assert b.transport._receiving.buffered == 0  # type: ignore[attr-defined]


async def test_sender_refuses_a_payload_over_max_payload_size(nodes: NodesFactory) -> None:
    a = await nodes("a", max_payload_size=1 * MiB, **SMALL)
    b = await nodes("b")
    b.register("len", echo_len, RAW)
    await a.connect("b")
    with pytest.raises(PayloadTooLargeError, match="max_payload_size"):
        await a.call("b", "len", b"q" * (2 * MiB), serializer="raw")
    assert await a.call("b", "len", b"ok", serializer="raw") == b"ok" + (2).to_bytes(8, "big")


async def test_receiver_that_never_reads_chunks_fails_the_call(nodes: NodesFactory) -> None:
    """Flow control: the sender never runs more than a window ahead of what was acknowledged, and a
    receiver that stops acknowledging fails the call after transfer_timeout instead of being flooded."""
    a = await nodes("a", transfer_timeout=0.5, **SMALL)
    b = await nodes("b", **SMALL)
    b.register("len", echo_len, RAW)
    await a.connect("b")

    async def deaf(source: str, frame: Any) -> None:
        return None

    b.transport._on_chunk = deaf  # type: ignore[attr-defined]
    published = a.transport.client.stats["out_bytes"]  # type: ignore[attr-defined]
    t0 = time.monotonic()
    with pytest.raises(NodeCommError, match="took no part of the payload") as info:
        await a.call("b", "len", b"w" * (8 * MiB), serializer="raw", timeout=30)
    assert info.value.code == "UNAVAILABLE"
    assert time.monotonic() - t0 < 5
    sent = a.transport.client.stats["out_bytes"] - published  # type: ignore[attr-defined]
    assert sent <= SMALL["flow_window"] + SMALL["chunk_size"] + 64 * 1024, sent


# ------------------------------------------------------------------ hostile peers speaking the wire
@pytest.fixture
async def raw(nats_server: NatsServer, nats_prefix: str) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


async def handshake(nc: Client, prefix: str, target: str, me: str, *, listen: bool = True) -> str:
    """Link to ``target`` as node ``me``; with ``listen``, also subscribe as ``me`` (or its presence
    probes find nobody there and it drops the link)."""
    if listen:
        await nc.subscribe(f"{prefix}.node.{me}.*")
    reply = await nc.request(f"{prefix}.node.{target}.{me}", encode(HELLO, extra={"expect": target}), timeout=5)
    assert decode(reply.data).extra.get("node") == target
    return f"{prefix}.node.{target}.{me}"


async def test_stalled_sender_is_dropped_and_its_buffer_freed(
    nodes: NodesFactory, raw: Client, nats_prefix: str
) -> None:
    b = await nodes("b", transfer_timeout=0.3, presence_interval=0.1)
    b.register("len", echo_len, RAW)
    subject = await handshake(raw, nats_prefix, "b", "evil")
    assert b.is_connected("evil")
    head = encode(1, id=7, method="len", serializer="raw", transfer=1, size=4 * MiB, extra={"win": MiB})
    await raw.publish(subject, head)
    await raw.publish(subject, encode(CHUNK, transfer=1, size=0, payload=b"a" * 65536))
    await raw.flush()
    await until(lambda: b.transport._receiving.buffered == 4 * MiB)  # type: ignore[attr-defined]
    await until(lambda: b.transport._receiving.buffered == 0)  # then it stalls: dropped by the sweep
    assert b.is_connected("evil")  # the peer stays; only its transfer is gone


def frames_of(data: bytes) -> list[Frame]:
    """The frames of one NATS message (several when the sender coalesced them into a batch)."""
    frame = decode(data)
    return split_batch(frame.payload) if frame.kind == BATCH else [frame]


async def test_garbage_and_lies_never_harm_the_node(nodes: NodesFactory, raw: Client, nats_prefix: str) -> None:
    a = await nodes("a")
    b = await nodes("b", max_receive_buffer=1 * MiB)
    b.register("len", echo_len, RAW)
    await a.connect("b")
    replies: asyncio.Queue[Any] = asyncio.Queue()

    async def collect(msg: Any) -> None:
        for frame in frames_of(msg.data):
            await replies.put(frame)

    await raw.subscribe(f"{nats_prefix}.node.evil.*", cb=collect)
    subject = await handshake(raw, nats_prefix, "b", "evil", listen=False)
    bad = [
        b"",  # empty
        b"\x00" * 3,  # shorter than a header
        b"\x09" + b"\x00" * 60,  # unknown protocol version
        encode(1, id=1, method="len", serializer="raw")[:-1] + b"\xff",  # fine header, then garbage
        encode(1, id=2, method="len", serializer="raw", extra={"md": {"k": 5}}),  # metadata not strings
        encode(1, id=3, method="len", serializer="raw", deadline=-1.0),  # negative deadline
        encode(CHUNK, transfer=99, size=0, payload=b"orphan"),  # chunk of no transfer
        encode(1, id=4, method="len", serializer="raw", transfer=5, size=2**60, extra={"win": MiB}),  # huge
        encode(1, id=5, method="len", serializer="raw", transfer=6, size=100, extra={}),  # no window
        encode(250, id=6),  # unknown kind
    ]
    for data in bad:
        await raw.publish(subject, data)
    # A huge announced payload is answered with RESOURCE_EXHAUSTED for that call, nothing else.
    got = await asyncio.wait_for(replies.get(), 5)
    while got.kind != 3:  # skip the ABORT sent first
        got = await asyncio.wait_for(replies.get(), 5)
    assert got.id == 4 and got.extra["err"][0] == "RESOURCE_EXHAUSTED"
    assert b.transport._receiving.buffered == 0  # type: ignore[attr-defined]
    assert await a.call("b", "len", b"fine", serializer="raw") == b"fine" + (4).to_bytes(8, "big")


async def test_chunk_acks_come_every_half_window(nodes: NodesFactory, raw: Client, nats_prefix: str) -> None:
    await nodes("b")
    acks: list[int] = []
    got_all = asyncio.Event()

    async def collect(msg: Any) -> None:
        frame = decode(msg.data)  # control frames are never batched
        if frame.kind == CHUNK_ACK:
            acks.append(frame.size)
            if frame.size >= 4 * 65536:
                got_all.set()

    await raw.subscribe(f"{nats_prefix}.node.evil.*", cb=collect)
    subject = await handshake(raw, nats_prefix, "b", "evil", listen=False)
    await raw.publish(
        subject, encode(4, method="nothing", serializer="raw", transfer=1, size=8 * 65536, extra={"win": 2 * 65536})
    )
    for i in range(4):
        await raw.publish(subject, encode(CHUNK, transfer=1, size=i * 65536, payload=b"c" * 65536))
    await asyncio.wait_for(got_all.wait(), 5)
    assert acks == [65536, 2 * 65536, 3 * 65536, 4 * 65536]


async def test_a_flood_of_requests_is_bounded_per_peer(nodes: NodesFactory, raw: Client, nats_prefix: str) -> None:
    """2000 requests at once from one peer: at most max_concurrent_calls_per_peer run, the rest are
    answered RESOURCE_EXHAUSTED, and another peer's calls still go through."""
    a = await nodes("a")
    b = await nodes("b", max_concurrent_calls_per_peer=50)
    started = 0

    async def hang(payload: Any, ctx: CallContext) -> None:
        nonlocal started
        started += 1
        await asyncio.Event().wait()

    b.register("hang", hang)
    b.register("len", echo_len, RAW)
    await a.connect("b")
    refused = 0
    all_answered = asyncio.Event()

    async def collect(msg: Any) -> None:
        nonlocal refused
        for frame in frames_of(msg.data):
            if frame.kind == 3 and frame.extra["err"][0] == "RESOURCE_EXHAUSTED":
                refused += 1
                if refused == 1950:
                    all_answered.set()

    await raw.subscribe(f"{nats_prefix}.node.evil.*", cb=collect)
    subject = await handshake(raw, nats_prefix, "b", "evil", listen=False)
    for i in range(2000):
        await raw.publish(subject, encode(1, id=i + 1, method="hang", serializer="json", payload=b"null"))
    await asyncio.wait_for(all_answered.wait(), 10)
    assert started == 50
    assert await a.call("b", "len", b"still", serializer="raw") == b"stil" + (5).to_bytes(8, "big")
