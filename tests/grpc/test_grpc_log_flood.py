"""A flood of bad frames from a raw gRPC client logs a bounded number of lines, none forged."""

from __future__ import annotations

import logging

import grpc
from conftest import grpc_config
from rawclient import raw_client, request

from node_comm_grpc.proto import node_comm_pb2 as pb

EVIL = "evil\nFORGED 2026-01-01 CRITICAL node_comm: root password is hunter2"


async def test_a_flood_of_bad_frames_logs_a_bounded_number_of_unforged_lines(nodes, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    b = await nodes("b", grpc_config("b"))
    b.register("echo", lambda p, ctx: p)
    # Unknown frames: each stream is closed after a few; a flood of such streams logs a few lines.
    for _ in range(20):
        async with raw_client(b.address) as raw:
            await raw.send(*[pb.Envelope(type=99, id=i) for i in range(40)])  # type: ignore[arg-type]
            code, _ = await raw.status()
            assert code is grpc.StatusCode.INVALID_ARGUMENT
    # Notifies of an unknown method with a newline in its name: each one fails on the node.
    async with raw_client(b.address) as raw:
        for _ in range(5):
            await raw.send(
                *[
                    pb.Envelope(type=pb.NOTIFY, id=1000 + i, method=EVIL, serializer="json", payload=b"1")
                    for i in range(200)
                ]
            )
        # Frames are handled in order: once this request is answered, the flood has been handled.
        await raw.send(request(9999, "echo", b'"done"', deadline=5.0))
        _, reply = await raw.read_until(9999)
        assert reply.type == pb.RESPONSE
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("node_comm")]
    unknown = [m for m in messages if "unknown frame type" in m]
    notify = [m for m in messages if "notify" in m]
    # 20 streams x 40 unknown frames: unlimited, that is at least 60 lines (each stream's first bad
    # frame, its closing and its loss); each kind is held to a burst of 10 (then 1/s).
    assert 0 < len(unknown) <= 32, unknown
    assert 0 < len(notify) <= 10, notify  # of 1000 notifies of an unknown method
    assert all("\n" not in m for m in messages)
    assert any(repr(EVIL) in m for m in notify)
