"""Small frames to one peer queued while a publish is pending go out as one NATS message (a
``BATCH``), within the broker's max_payload; a batch from a peer is checked frame by frame."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from node_comm import CallContext, Message, MessageType
from node_comm_nats.wire import BATCH, CHUNK, HELLO, encode, encode_batch
from tests.natsd import NatsServer

from .conftest import NodesFactory
from .test_nats_payloads import RAW, echo_len, handshake


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


KiB = 1024


async def echo(payload: Any, ctx: CallContext) -> Any:
    return payload


async def test_concurrent_small_calls_share_nats_messages(nodes: NodesFactory) -> None:
    a = await nodes("a", presence_interval=60)
    b = await nodes("b", presence_interval=60)
    b.register("echo", echo)
    await a.connect("b")
    stats = a.transport.client.stats  # type: ignore[attr-defined]
    before = stats["out_msgs"]
    results = await asyncio.gather(*(a.call("b", "echo", i) for i in range(64)))
    assert results == list(range(64))
    assert stats["out_msgs"] - before <= 8  # 64 requests in a few messages (1 when nothing interleaves)
    assert await a.call("b", "echo", "alone") == "alone"  # a single frame still goes on its own


async def test_batches_stay_within_the_brokers_max_payload(nodes: NodesFactory) -> None:
    a = await nodes("a", presence_interval=60)
    b = await nodes("b", presence_interval=60)
    b.register("len", echo_len, RAW)
    await a.connect("b")
    max_payload = a.transport.client.max_payload  # type: ignore[attr-defined]
    payload = b"p" * (200 * KiB)  # under chunk_size: small frames, 64 of them are 12 MiB
    stats = a.transport.client.stats  # type: ignore[attr-defined]
    before = stats["out_msgs"], stats["out_bytes"]
    out = await asyncio.gather(*(a.call("b", "len", payload, serializer="raw", timeout=10) for _ in range(64)))
    assert out == [b"pppp" + len(payload).to_bytes(8, "big")] * 64
    msgs, sent = stats["out_msgs"] - before[0], stats["out_bytes"] - before[1]
    assert msgs < 64 and sent / msgs <= max_payload  # batched, and no message over the limit


def framed(*parts: bytes) -> bytes:
    return encode(BATCH) + b"".join(struct.pack("!I", len(p)) + p for p in parts)


REQ = encode(1, id=1, method="hit", serializer="json", payload=b'"bad"')


@pytest.mark.parametrize(
    "data",
    [
        encode(BATCH, payload=b"\x00\x00"),  # ends inside a length
        encode(BATCH, payload=b"\x00\x10\x00\x00" + REQ),  # a length past the end
        framed(REQ[:10]),  # a frame shorter than a header
        framed(encode_batch([REQ])),  # a nested batch
        framed(encode(HELLO, extra={"expect": "b"})),  # a handshake in a batch
        framed(encode(CHUNK, transfer=1, payload=b"x")),  # a chunk in a batch
        framed(encode(1, id=1, method="hit", serializer="json", transfer=3, size=10, extra={"win": 10})),
        framed(REQ, b"\xff" * 70),  # a good frame, then garbage: the whole batch is dropped
    ],
    ids=["short-length", "long-length", "short-frame", "nested", "hello", "chunk", "transfer-head", "tail-garbage"],
)
async def test_malformed_batches_are_dropped(nodes: NodesFactory, raw: Client, nats_prefix: str, data: bytes) -> None:
    b = await nodes("b")
    hits: list[Any] = []
    valid = asyncio.Event()

    async def hit(payload: Any, ctx: CallContext) -> str:
        hits.append(payload)
        if hits.count("ok") == 3:
            valid.set()
        return "hit"

    b.register("hit", hit)
    subject = await handshake(raw, nats_prefix, "b", "evil")
    await raw.publish(subject, data)
    ok = [encode(1, id=10 + i, method="hit", serializer="json", payload=b'"ok"') for i in range(3)]
    await raw.publish(subject, encode_batch(ok))  # a valid batch after it is served in full
    await asyncio.wait_for(valid.wait(), 5)
    assert hits == ["ok", "ok", "ok"]
    assert b.is_connected("evil")


async def test_frames_queued_behind_a_cancelled_sender_still_go_out(nodes: NodesFactory) -> None:
    # The first sender to a peer holds the batch open for one turn of the loop; if it is
    # cancelled then (a deadline, or the peer cancelled the call it answers), what others queued
    # behind it must still be published: once, a cancelled response left a reply stuck for good.
    a = await nodes("a", presence_interval=60)
    b = await nodes("b", presence_interval=60)
    seen: list[Any] = []
    arrived = asyncio.Event()

    async def record(payload: Any, ctx: CallContext) -> None:
        seen.append(payload)
        if payload == "queued":
            arrived.set()

    b.register("record", record)
    await a.connect("b")

    def notify(value: str) -> Message:
        return Message(0, MessageType.NOTIFY, "a", "b", "record", json.dumps(value).encode(), "json")

    first = asyncio.ensure_future(a.transport.send(notify("cancelled")))
    second = asyncio.ensure_future(a.transport.send(notify("queued")))
    await asyncio.sleep(0)  # first holds the batch open, second queued behind it and returned
    assert second.done() and not first.done()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(arrived.wait(), 5)
    assert seen == ["queued"]  # the cancelled frame is not sent
