"""A raw client of the gRPC wire for abuse tests: it opens the ``Connect`` stream itself, runs
the handshake (the one place that knows it) and sends whatever batches a test crafts."""

from __future__ import annotations

from typing import Any

from grpc import aio

from node_comm_grpc import handshake as hsk
from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import METHOD, PROTOCOL_VERSION


def batch(*envs: pb.Envelope) -> bytes:
    """One encoded ``Batch`` of ``envs``."""
    return pb.Batch(frames=list(envs)).SerializeToString()


def hello(node_id: str = "raw", expected: str = "b", nonce: bytes | None = None) -> pb.Envelope:
    """A dialler's first handshake frame."""
    return pb.Envelope(type=pb.HANDSHAKE, handshake=pb.Handshake(
        node_id=node_id, protocol_version=PROTOCOL_VERSION, expected_node_id=expected,
        nonce=hsk.new_nonce() if nonce is None else nonce,
    ))


class RawConnection:
    """One ``Connect`` stream; ``sent`` records every message written, in order."""

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

    async def handshake(self, node_id: str = "raw", expected: str = "b", secret: str | None = None,
                        *extra: pb.Envelope) -> pb.Handshake:
        """Run the dialler's side of the handshake (``extra`` frames travel with the last message);
        returns the final ack (``refused`` set when refused)."""
        nonce = hsk.new_nonce()
        if secret is None:
            await self.send(hello(node_id, expected, nonce), *extra)
        else:
            await self.send(hello(node_id, expected, nonce))
        frames = await self.read()
        assert frames, "the node closed the stream during the handshake"
        ack = frames[0].handshake
        if ack.challenge and secret is not None:
            mine = hsk.proof(secret.encode(), hsk.DIALLER, nonce, ack.nonce, node_id, expected, PROTOCOL_VERSION)
            await self.send(pb.Envelope(type=pb.HANDSHAKE, handshake=pb.Handshake(proof=mine)), *extra)
            frames = await self.read()
            assert frames
            ack = frames[0].handshake
        return ack

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(grace=None)

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
