"""Scatter-gather over real gRPC sockets: a large payload a serializer gives as a list of buffers
(``serialize_parts``) reaches the transport as a ``PartsMessage`` and is chunked straight from the
buffers, never joined before the writer's batch; it arrives byte-exact wherever chunk boundaries
fall, is refused past ``max_payload_size`` as a joined one is, and interceptors see its true bytes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from conftest import SECRET, grpc_config

from node_comm import (
    CallContext,
    ErrorCode,
    Interceptor,
    Message,
    MethodOptions,
    NodeConfig,
    PayloadTooLargeError,
    RemoteExecutionError,
)
from node_comm.message import PartsMessage, payload_size
from node_comm.serializer import Serializer
from node_comm_interceptors.auth import AuthInterceptor

CHUNK = 1024  # the smallest chunk_size: boundaries fall inside and between parts
THRESHOLD = 4096  # offload_threshold: payloads from here on are encoded as parts


class PartsSerializer(Serializer):
    """Encodes a list of buffers as those buffers (``serialize_parts``), decodes to ``bytes``."""

    @property
    def name(self) -> str:
        return "parts"

    def serialize(self, obj: Any) -> bytes:
        return b"".join(obj) if isinstance(obj, list) else bytes(obj)

    def serialize_parts(self, obj: Any) -> Sequence[Any]:
        return list(obj) if isinstance(obj, list) else [obj]

    def deserialize(self, data: bytes) -> Any:
        return bytes(data)


class Spy(Interceptor):
    """Records, per outbound message, whether it carried parts and its size (without joining)."""

    def __init__(self, read_payload: bool = False) -> None:
        self.read_payload = read_payload
        self.seen: list[tuple[bool, int]] = []
        self.payloads: list[bytes] = []

    async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        parted = type(message) is PartsMessage and message.parts is not None
        self.seen.append((parted, payload_size(message)))
        if self.read_payload:
            self.payloads.append(message.payload)
        return await next_handler(message)


def config(node_id: str, port: int | None = 0, **grpc: Any) -> NodeConfig:
    return dataclasses.replace(grpc_config(node_id, port, **grpc), offload_threshold=THRESHOLD)


def pieces(sizes: Sequence[int]) -> list[Any]:
    """Buffers of ``sizes`` bytes, of the kinds serializers give: bytes, bytearray, memoryview."""
    out: list[Any] = []
    for i, n in enumerate(sizes):
        data = bytes((i * 7 + j) % 251 for j in range(n))
        out.append((bytes, bytearray, memoryview)[i % 3](data))
    return out


async def pair(nodes: Callable[..., Any], **grpc: Any) -> tuple[Any, Any]:
    b = await nodes("b", config("b", **grpc))
    a = await nodes("a", config("a", port=None, **grpc))
    for n in (a, b):
        n.serializers.register(PartsSerializer())
    await a.connect("b", b.address)
    return a, b


@pytest.mark.parametrize(
    ("chunk_size", "sizes"),
    [
        # chunked: boundaries inside parts, exactly between them, a part spanning several chunks,
        # parts of one byte, and a short last chunk
        (CHUNK, [5, 1019, 1024, 3000, 1, 2048, 7, 0, 1]),
        # one inline frame (below chunk_size): the writer joins the parts into its batch
        (64 * 1024, [100, 20_000, 3, 9_000]),
    ],
)
async def test_parts_arrive_byte_exact_both_ways(nodes: Callable[..., Any], chunk_size: int, sizes: list[int]) -> None:
    a, b = await pair(nodes, chunk_size=chunk_size)
    spy_a, spy_b = Spy(), Spy()
    a.interceptors.add(spy_a)
    b.interceptors.add(spy_b)
    got: list[bytes] = []

    async def echo(payload: Any, ctx: CallContext) -> Any:
        got.append(payload)
        return [payload[:10], memoryview(payload)[10:]]  # the reply goes as parts too

    b.register("echo", echo, MethodOptions(serializer="parts"))
    sent = pieces(sizes)
    whole = b"".join(sent)
    back = await a.call("b", "echo", sent, serializer="parts", timeout=30)
    assert got == [whole] and back == whole
    assert spy_a.seen == [(True, len(whole))]  # the request reached the chain, and the link, as parts


async def test_payload_below_the_offload_threshold_is_one_buffer(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes, chunk_size=CHUNK)
    spy = Spy()
    a.interceptors.add(spy)
    b.register("echo", lambda p, ctx: p, MethodOptions(serializer="parts"))
    sent = pieces([100, 200])
    assert await a.call("b", "echo", sent, serializer="parts", timeout=30) == b"".join(sent)
    assert spy.seen == [(False, 300)]  # small payloads never pay for the parts machinery


async def test_buffers_may_change_once_notify_returns(nodes: Callable[..., Any]) -> None:
    # The parts borrow the caller's memory: the send returns only once the writer copied them.
    a, b = await pair(nodes, chunk_size=CHUNK)
    got: list[bytes] = []
    arrived = asyncio.Event()

    async def keep(payload: Any, ctx: CallContext) -> None:
        got.append(payload)
        arrived.set()

    b.register("keep", keep, MethodOptions(serializer="parts"))
    link = a.transport._links["b"]
    write, held = link._write, asyncio.Event()

    async def held_write(data: bytes) -> None:  # the writer is busy until the test says
        await held.wait()
        await write(data)

    link._write = held_write
    mine = bytearray(b"\x01" * 64 * 1024)
    sending = asyncio.ensure_future(a.notify("b", "keep", [b"head", mine, memoryview(mine)[:5000]], serializer="parts"))
    for _ in range(2000):  # far more loop turns than queueing its 70 chunks takes
        if sending.done():
            break
        await asyncio.sleep(0)
    assert not sending.done()  # frames that borrow `mine` wait in the queue: so does the send
    held.set()
    await asyncio.wait_for(sending, 30)
    mine[:] = b"\x02" * len(mine)  # at once: nothing of it may still be waiting to be written
    await asyncio.wait_for(arrived.wait(), 30)
    assert got == [b"head" + b"\x01" * (64 * 1024 + 5000)]


@pytest.mark.parametrize("size", [20_000, 100_000])  # one inline frame; a chunked transfer
async def test_a_send_stopped_while_its_buffers_wait_never_sends_them_changed(
    nodes: Callable[..., Any], size: int
) -> None:
    chunk = 32 * 1024
    a, b = await pair(nodes, chunk_size=chunk)
    got: list[bytes] = []
    arrived = asyncio.Event()

    async def keep(payload: Any, ctx: CallContext) -> None:
        got.append(payload)
        arrived.set()

    b.register("keep", keep, MethodOptions(serializer="parts"))
    b.register("sync", lambda p, ctx: b"ok", MethodOptions(serializer="parts"))
    link = a.transport._links["b"]
    write, held = link._write, asyncio.Event()

    async def held_write(data: bytes) -> None:
        await held.wait()
        await write(data)

    link._write = held_write
    await a.notify("b", "sync", [b"x"], serializer="parts")  # its write holds the writer
    mine = bytearray(b"\x01" * size)
    sending = asyncio.ensure_future(a.notify("b", "keep", [b"head", mine], serializer="parts"))
    for _ in range(2000):
        if sending.done():
            break
        await asyncio.sleep(0)
    assert not sending.done()
    sending.cancel()  # e.g. the caller's deadline
    with pytest.raises(asyncio.CancelledError):
        await sending
    mine[:] = b"\x02" * size  # the caller owns its buffer again
    held.set()
    assert await a.call("b", "sync", [b"x"], serializer="parts", timeout=30) == b"ok"
    # What was still queued of the stopped send was withdrawn (a chunked transfer also aborted):
    # neither the changed bytes nor a partial payload reached the receiver; the link works on.
    assert got == [] and not arrived.is_set()
    assert not b.transport._links["a"]._partials


async def test_oversize_parts_are_refused_as_before(nodes: Callable[..., Any]) -> None:
    limit = 16 * 1024
    a = await nodes("a", config("a", chunk_size=CHUNK, max_payload_size=limit))
    b = await nodes("b", config("b", chunk_size=CHUNK, max_payload_size=limit))
    c = await nodes("c", config("c", port=None, chunk_size=CHUNK))
    for n in (a, b, c):
        n.serializers.register(PartsSerializer())
        n.register("size", lambda p, ctx: b"%d" % len(p), MethodOptions(serializer="parts"))
        n.register(
            "make",
            lambda p, ctx: [b"x" * 10, bytearray(int.from_bytes(p, "little"))],
            MethodOptions(serializer="parts"),
        )
    await a.connect("b", b.address)
    await c.connect("b", b.address)
    big = pieces([100, limit, 100])
    # sender side: the link refuses to send it
    with pytest.raises(PayloadTooLargeError) as info:
        await a.call("b", "size", big, serializer="parts", timeout=30)
    assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
    # receiver side: b refuses what c sends, and drops its chunks; the link stays usable
    with pytest.raises(RemoteExecutionError) as rinfo:
        await c.call("b", "size", big, serializer="parts", timeout=30)
    assert rinfo.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert await c.call("b", "size", pieces([100, 5000]), serializer="parts", timeout=30) == b"5100"
    # a reply too large for the server's limit: the caller gets why, it does not wait
    with pytest.raises(RemoteExecutionError) as reply_info:
        await c.call("b", "make", [(2 * limit).to_bytes(4, "little")], serializer="parts", timeout=30)
    assert reply_info.value.code is ErrorCode.RESOURCE_EXHAUSTED


async def test_interceptors_see_the_payload_bytes(nodes: Callable[..., Any]) -> None:
    # An interceptor that reads message.payload gets the joined bytes (and the send then carries
    # those); sign_payload hashes the buffers without joining and the receiver's check agrees.
    auth = {"token": SECRET, "sign_payload": True}
    b = await nodes("b", config("b", chunk_size=CHUNK))
    a = await nodes("a", config("a", port=None, chunk_size=CHUNK))
    for n in (a, b):
        n.serializers.register(PartsSerializer())
        n.interceptors.add(AuthInterceptor(**auth))
    b.register("echo", lambda p, ctx: [p[:1], p[1:]], MethodOptions(serializer="parts"))
    await a.connect("b", b.address)
    sent = pieces([10, 3000, 2500, 1])
    whole = b"".join(sent)
    assert await a.call("b", "echo", sent, serializer="parts", timeout=30) == whole
    reader = Spy(read_payload=True)
    a.interceptors.add(reader)
    assert await a.call("b", "echo", sent, serializer="parts", timeout=30) == whole
    assert reader.payloads == [whole] and reader.seen == [(True, len(whole))]


async def test_a_broadcast_of_parts_reaches_every_target_byte_exact(nodes: Callable[..., Any]) -> None:
    # One PayloadParts shared by every target's PartsMessage: each link chunks views of it.
    a = await nodes("a", config("a", chunk_size=CHUNK))
    peers = [await nodes(f"p{i}", config(f"p{i}", port=None, chunk_size=CHUNK)) for i in range(3)]
    a.serializers.register(PartsSerializer())
    for p in peers:
        p.serializers.register(PartsSerializer())
        p.register("echo", lambda payload, ctx: payload, MethodOptions(serializer="parts"))
        await p.connect("a", a.address)
    await a.wait_for_peers(3, timeout=30)
    sent = pieces([7, 3000, 1024, 2500])
    out = await a.broadcast("echo", sent, serializer="parts", timeout=30)
    assert out == {f"p{i}": b"".join(sent) for i in range(3)}
