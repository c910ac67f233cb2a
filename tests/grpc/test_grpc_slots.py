"""Over the wire: a REQUEST and its CANCEL in one batch (what honest callers with short timeouts
produce) never leak the caller's slots of max_concurrent_calls_per_peer."""

from __future__ import annotations

import asyncio

from conftest import grpc_config
from rawclient import RawConnection

from node_comm_grpc.proto import node_comm_pb2 as pb


async def test_request_and_cancel_in_one_batch_free_the_slot(nodes) -> None:
    b = await nodes("b", grpc_config("b"))
    b.config.max_concurrent_calls_per_peer = 4
    release = asyncio.Event()

    async def slow(payload: object, ctx: object) -> object:
        await release.wait()
        return payload

    b.register("slow", slow)
    b.register("echo", lambda p, ctx: p)
    async with RawConnection(b.address) as conn:
        ack = await conn.handshake("raw", "b")
        assert ack.refused == ""
        call_id = 0
        for _ in range(50):  # 50 batches of 4 REQUEST+CANCEL pairs: 200 slots if they leaked
            frames = []
            for _ in range(4):
                call_id += 1
                frames.append(pb.Envelope(type=pb.REQUEST, id=call_id, method="slow", payload=b"1", serializer="json"))
                frames.append(pb.Envelope(type=pb.CANCEL, id=call_id))
            await conn.send(*frames)
        call_id += 1
        await conn.send(pb.Envelope(type=pb.REQUEST, id=call_id, method="echo", payload=b'"ok"', serializer="json"))
        while True:
            frames = await asyncio.wait_for(conn.read(), 10)
            assert frames is not None
            reply = [f for f in frames if f.id == call_id]
            if reply:
                break
        assert reply[0].type == pb.RESPONSE, reply[0].error.message
        assert reply[0].payload == b'"ok"'
