"""A raw client of a node's ``node_comm.v1.NodeComm/Connect`` stream, for tests that craft frames by
hand with the generated protobuf code. :func:`handshake` is the one place a test does the
dialler's side of the handshake."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc import aio

from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import METHOD, PROTOCOL_VERSION
from node_comm_grpc.wire import chunk_header

__all__ = ["RawClient", "batch", "chunk", "handshake", "raw_client", "read_batch", "request"]


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


async def read_batch(call: Any) -> list[pb.Envelope]:
    data = await call.read()
    assert data is not aio.EOF, "the node closed the stream"
    return list(pb.Batch.FromString(data).frames)


async def handshake(call: Any, node_id: str = "raw", expected: str = "b", token: str | None = None) -> pb.Envelope:
    """Do the dialler's side of the handshake on an open Connect ``call``; returns the server's
    ack frame (``ack.handshake.refused`` says why when it refused)."""
    await call.write(
        batch(
            pb.Envelope(
                type=pb.HANDSHAKE,
                handshake=pb.Handshake(
                    node_id=node_id,
                    protocol_version=PROTOCOL_VERSION,
                    expected_node_id=expected,
                    token=token or "",
                ),
            )
        )
    )
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
