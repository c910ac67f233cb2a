"""A flood of bad frames from a raw gRPC client logs a bounded number of lines, none forged."""

from __future__ import annotations

import logging

from conftest import grpc_config
from grpc import aio
from test_grpc_wire import batch, handshake

from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import METHOD

EVIL = "evil\nFORGED 2026-01-01 CRITICAL node_comm: root password is hunter2"


async def test_a_flood_of_bad_frames_logs_a_bounded_number_of_unforged_lines(nodes, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    b = await nodes("b", grpc_config("b"))
    b.register("echo", lambda p, ctx: p)
    async with aio.insecure_channel(b.address) as channel:
        call = channel.stream_stream(METHOD)()
        await call.write(handshake())
        (ack,) = pb.Batch.FromString(await call.read()).frames
        assert not ack.handshake.refused
        for _ in range(5):
            frames = [pb.Envelope(type=99, id=i) for i in range(200)]  # type: ignore[arg-type]
            frames += [
                pb.Envelope(type=pb.NOTIFY, id=1000 + i, method=EVIL, serializer="json", payload=b"1")
                for i in range(200)
            ]
            await call.write(batch(*frames))
        # Frames are handled in order: once this request is answered, the flood has been handled.
        await call.write(
            batch(
                pb.Envelope(type=pb.REQUEST, id=9999, method="echo", serializer="json", payload=b'"done"', deadline=5.0)
            )
        )
        while True:
            data = await call.read()
            if data is aio.EOF or any(f.id == 9999 and f.type == pb.RESPONSE for f in pb.Batch.FromString(data).frames):
                break
        call.cancel()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("node_comm")]
    unknown = [m for m in messages if "unknown type" in m]
    notify = [m for m in messages if "notify" in m]
    assert 0 < len(unknown) <= 10, unknown  # of 1000 unknown frames
    assert 0 < len(notify) <= 10, notify  # of 1000 notifies of an unknown method
    assert all("\n" not in m for m in messages)
    assert any(repr(EVIL) in m for m in notify)
