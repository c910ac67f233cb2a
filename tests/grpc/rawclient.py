"""A raw client of a node's ``node_comm.v1.NodeComm/Connect`` stream, for abuse tests that craft
frames by hand with the generated protobuf code. :func:`handshake` is the one place that knows
the dialler's side of the handshake (including the shared-secret challenge-response)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc import aio

from node_comm_grpc import handshake as hsk
from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import METHOD, PROTOCOL_VERSION
from node_comm_grpc.wire import chunk_header

__all__ = [
    "RawClient",
    "RawConnection",
    "batch",
    "chunk",
    "handshake",
    "hello",
    "raw_client",
    "read_batch",
    "request",
]


def batch(*envs: pb.Envelope) -> bytes:
    """One encoded ``Batch`` of ``envs``."""
    return pb.Batch(frames=list(envs)).SerializeToString()


def request(msg_id: int, method: str = "echo", payload: bytes = b'"x"', **fields: Any) -> pb.Envelope:
    """A REQUEST frame (json payload by default); ``fields`` are other ``Envelope`` fields."""
    fields.setdefault("serializer", "json")
    fields.setdefault("deadline", 30.0)
    return pb.Envelope(type=pb.REQUEST, id=msg_id, method=method, payload=payload, **fields)


def chunk(transfer: int, data: bytes) -> bytes:
    """A ``Batch`` holding one CHUNK frame of ``transfer``, encoded as the transport does."""
    prefix, _ = chunk_header(transfer, len(data))
    return prefix + data


def hello(node_id: str = "raw", expected: str = "b", nonce: bytes | None = None) -> pb.Envelope:
    """A dialler's first handshake frame."""
    return pb.Envelope(
        type=pb.HANDSHAKE,
        handshake=pb.Handshake(
            node_id=node_id,
            protocol_version=PROTOCOL_VERSION,
            expected_node_id=expected,
            nonce=hsk.new_nonce() if nonce is None else nonce,
        ),
    )


async def read_batch(call: Any) -> list[pb.Envelope]:
    data = await call.read()
    assert data is not aio.EOF, "the node closed the stream"
    return list(pb.Batch.FromString(data).frames)


async def handshake(
    call: Any,
    node_id: str = "raw",
    expected: str = "b",
    token: str | None = None,
    *extra: pb.Envelope,
    sent: list[bytes] | None = None,
) -> pb.Envelope:
    """Do the dialler's side of the handshake on an open Connect ``call`` (``extra`` frames travel
    with its last message; every message written is appended to ``sent``); returns the server's
    final ack frame (``ack.handshake.refused`` says why when it refused)."""

    async def write(data: bytes) -> None:
        if sent is not None:
            sent.append(data)
        await call.write(data)

    nonce = hsk.new_nonce()
    first = hello(node_id, expected, nonce)
    await write(batch(first) if token is not None else batch(first, *extra))
    frames = await read_batch(call)
    assert frames and frames[0].type == pb.HANDSHAKE_ACK, frames
    ack = frames[0].handshake
    if ack.challenge and token is not None:
        mine = hsk.proof(token.encode(), hsk.DIALLER, nonce, ack.nonce, node_id, expected, PROTOCOL_VERSION)
        await write(batch(pb.Envelope(type=pb.HANDSHAKE, handshake=pb.Handshake(proof=mine)), *extra))
        frames = await read_batch(call)
        assert frames and frames[0].type == pb.HANDSHAKE_ACK, frames
    return frames[0]


class RawClient:
    """A handshaken Connect stream: ``send`` frames, ``send_bytes`` anything, ``read`` batches."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def send(self, *envs: pb.Envelope) -> None:
        await self.call.write(batch(*envs))

    async def send_bytes(self, data: bytes) -> None:
        await self.call.write(data)

    async def read(self) -> list[pb.Envelope]:
        return await read_batch(self.call)

    async def status(self) -> tuple[grpc.StatusCode, str]:
        """Read to the end of the stream (a client sees the status only after every message the
        node sent before it), then the call's status code and details."""
        with contextlib.suppress(aio.AioRpcError):
            while await self.call.read() is not aio.EOF:
                pass
        return await self.call.code(), await self.call.details()

    async def read_until(self, msg_id: int) -> tuple[list[pb.Envelope], pb.Envelope]:
        """Frames read before the first one answering ``msg_id``, and that one."""
        before: list[pb.Envelope] = []
        while True:
            for env in await self.read():
                if env.id == msg_id and env.type in (pb.RESPONSE, pb.ERROR):
                    return before, env
                before.append(env)


@asynccontextmanager
async def raw_client(
    address: str, node_id: str = "raw", expected: str = "b", token: str | None = None
) -> AsyncIterator[RawClient]:
    """A :class:`RawClient` connected to the node at ``address`` as ``node_id``; closed on exit."""
    async with aio.insecure_channel(address) as channel:
        call = channel.stream_stream(METHOD)()
        ack = await handshake(call, node_id, expected, token)
        assert not ack.handshake.refused, ack.handshake.refused
        try:
            yield RawClient(call)
        finally:
            call.cancel()


class RawConnection:
    """One ``Connect`` stream, not yet handshaken; ``sent`` records every message written."""

    def __init__(self, address: str) -> None:
        self.channel = aio.insecure_channel(address)
        self.call: Any = self.channel.stream_stream(METHOD)()
        self.sent: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.sent.append(data)
        await self.call.write(data)

    async def send(self, *envs: pb.Envelope) -> None:
        await self.write(batch(*envs))

    async def read(self) -> list[pb.Envelope] | None:
        """The frames of the next message, or ``None`` at the end of the stream."""
        try:
            data = await self.call.read()
        except aio.AioRpcError:  # the node ended the stream with an error status
            return None
        if data is aio.EOF:
            return None
        return list(pb.Batch.FromString(data).frames)

    async def handshake(
        self, node_id: str = "raw", expected: str = "b", secret: str | None = None, *extra: pb.Envelope
    ) -> pb.Handshake:
        """:func:`handshake` on this stream; returns the final ack's handshake."""
        ack = await handshake(self.call, node_id, expected, secret, *extra, sent=self.sent)
        return ack.handshake

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(grace=None)

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
