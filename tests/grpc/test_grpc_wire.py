"""The wire seen from a raw gRPC client: bad input never kills a node; health; proto in step."""

from __future__ import annotations

import filecmp
import importlib.util
import time
from pathlib import Path

import grpc
import pytest
from conftest import grpc_config
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rawclient import batch, handshake, read_batch

from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import METHOD

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "transport_grpc"


@pytest.fixture
async def served(nodes):  # type: ignore[no-untyped-def]
    """Node ``b`` serving ``echo``, with ``a`` connected to it (to show b keeps serving others)."""
    b = await nodes("b", grpc_config("b", handshake_timeout=0.3))
    b.register("echo", lambda p, ctx: p)
    a = await nodes("a")
    await a.connect("b", b.address)
    return a, b


async def still_serving(a, b) -> None:  # type: ignore[no-untyped-def]
    assert await a.call("b", "echo", "still here") == "still here"
    assert b.is_running


async def test_garbage_bytes_close_that_stream_only(served) -> None:
    a, b = served
    async with aio.insecure_channel(b.address) as channel:
        call = channel.stream_stream(METHOD)()
        await call.write(b"\xff\xfe garbage \x00\x01")
        assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT
        # garbage after a good handshake: same
        call = channel.stream_stream(METHOD)()
        ack = await handshake(call)
        assert ack.type == pb.HANDSHAKE_ACK and ack.handshake.node_id == "b"
        await call.write(b"\x0a\xff\xff\xff\xff\x0f")
        assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "raw" not in b.connected_nodes
    await still_serving(a, b)


async def test_frame_before_handshake_closes_stream(served) -> None:
    a, b = served
    async with aio.insecure_channel(b.address) as channel:
        call = channel.stream_stream(METHOD)()
        await call.write(batch(pb.Envelope(type=pb.REQUEST, id=1, method="echo", serializer="json", payload=b'"x"')))
        assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT
    await still_serving(a, b)


async def test_unknown_frame_type_gets_an_error_and_the_stream_keeps_serving(served) -> None:
    a, b = served
    async with aio.insecure_channel(b.address) as channel:
        call = channel.stream_stream(METHOD)()
        ack = await handshake(call)
        assert not ack.handshake.refused
        await call.write(batch(pb.Envelope(type=99, id=7)))  # type: ignore[arg-type]
        (err,) = await read_batch(call)
        assert err.type == pb.ERROR and err.id == 7 and err.error.code == "INVALID_ARGUMENT"
        # a well-formed request on the same stream is still served
        await call.write(
            batch(
                pb.Envelope(
                    type=pb.REQUEST, id=8, method="echo", serializer="json", payload=b'"raw hello"', deadline=5.0
                )
            )
        )
        (resp,) = await read_batch(call)
        assert resp.type == pb.RESPONSE and resp.id == 8 and resp.payload == b'"raw hello"'
        call.cancel()
    await still_serving(a, b)


async def test_wrong_protocol_version_is_refused(served) -> None:
    a, b = served
    async with aio.insecure_channel(b.address) as channel:
        call = channel.stream_stream(METHOD)()
        await call.write(
            batch(pb.Envelope(type=pb.HANDSHAKE, handshake=pb.Handshake(node_id="raw", protocol_version=999)))
        )
        (ack,) = await read_batch(call)
        assert "protocol version 999" in ack.handshake.refused
        assert await call.code() is grpc.StatusCode.FAILED_PRECONDITION
    await still_serving(a, b)


async def test_silent_stream_is_closed_after_handshake_timeout(served) -> None:
    a, b = served
    async with aio.insecure_channel(b.address) as channel:
        call = channel.stream_stream(METHOD)()
        t0 = time.monotonic()
        assert await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 2.0
    await still_serving(a, b)


async def test_token_is_checked(nodes) -> None:
    from node_comm import ConnectFailedError

    b = await nodes("b", grpc_config("b", token="s3cret"))
    a = await nodes("a", grpc_config("a", token="wrong"))
    with pytest.raises(ConnectFailedError, match="credentials"):
        await a.connect("b", b.address)
    ok = await nodes("ok", grpc_config("ok", token="s3cret"))
    await ok.connect("b", b.address)
    assert b.connected_nodes == ["ok"]


async def test_health_service(nodes) -> None:
    b = await nodes("b")
    async with aio.insecure_channel(b.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "node_comm.v1.NodeComm"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    health = b.transport._health  # type: ignore[attr-defined]
    await b.stop()
    assert health._server_status[""] == health_pb2.HealthCheckResponse.NOT_SERVING


def test_generated_proto_code_is_in_step(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", PLUGIN / "tools" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for fresh in gen.generate(tmp_path):
        committed = PLUGIN / "src" / "node_comm_grpc" / "proto" / fresh.name
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert filecmp.cmp(fresh, committed, shallow=False), f"{committed.name} is stale: run `make proto`"
