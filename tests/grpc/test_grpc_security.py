"""Trust over gRPC, tried as an attacker would over real loopback sockets: the shared secret never
travels, a recorded or reflected proof is worthless, an impostor server learns nothing, node ids
cannot be taken over, unauthenticated peers cannot reach pickle methods, and the counts of
connections, handshakes and health watchers are bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import grpc_config
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rawclient import RawConnection, batch, hello

from node_comm import (
    CallContext,
    ConnectFailedError,
    ErrorCode,
    MethodOptions,
    RemoteExecutionError,
)
from node_comm_grpc import handshake as hsk
from node_comm_grpc import health as health_module
from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import SERVICE

SECRET = "correct horse battery staple"


# ---------------------------------------------------------------------------- helpers
class Recorder:
    """A TCP relay on loopback recording every byte both ways (plaintext HTTP/2 shows any secret)."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.data = bytearray()
        self.server: asyncio.Server | None = None
        self.address = ""

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while chunk := await src.read(65536):
                    self.data += chunk
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def impostor(answer: Any) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A gRPC server speaking the Connect method that records what a dialler sends and answers
    its first message with ``answer(frames)`` (bytes of a Batch, or None to stay silent)."""
    received: list[bytes] = []

    async def connect(request_iterator: Any, context: Any) -> AsyncIterator[bytes]:
        async for data in request_iterator:
            received.append(data)
            reply = answer(list(pb.Batch.FromString(data).frames))
            if reply is not None:
                yield reply

    server = aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Connect": grpc.stream_stream_rpc_method_handler(connect)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        await server.stop(None)


def secret_config(node_id: str, port: int | None = 0, **grpc_opts: Any) -> Any:
    return grpc_config(node_id, port, token=SECRET, **grpc_opts)


# ---------------------------------------------------------------------------- A: the secret
async def test_the_shared_secret_never_travels(nodes) -> None:
    b = await nodes("b", secret_config("b"))
    b.register("echo", lambda p, ctx: p)
    a = await nodes("a", secret_config("a", port=None))
    a.register("echo", lambda p, ctx: p)
    async with Recorder(b.address) as rec:
        await a.connect("b", rec.address)
        assert await a.call("b", "echo", "payload") == "payload"
        assert await b.call("a", "echo", "back") == "back"
    assert b"payload" in rec.data  # the recorder sees the plaintext stream ...
    assert SECRET.encode() not in rec.data  # ... and no secret in it


async def test_an_impostor_server_learns_nothing(nodes) -> None:
    """It cannot prove the secret, so the dialler never proves anything to it."""

    def fake_challenge(frames: list[pb.Envelope]) -> bytes:
        return batch(
            pb.Envelope(
                type=pb.HANDSHAKE_ACK,
                handshake=pb.Handshake(
                    node_id="b", protocol_version=2, nonce=hsk.new_nonce(), proof=b"\0" * 32, challenge=True
                ),
            )
        )

    a = await nodes("a", secret_config("a", port=None))
    async with impostor(fake_challenge) as (address, received):
        with pytest.raises(ConnectFailedError, match="could not prove it holds the shared secret"):
            await a.connect("b", address, timeout=5)
    assert len(received) == 1  # only the hello: no proof was sent
    assert not any(f.handshake.proof for f in pb.Batch.FromString(received[0]).frames)
    assert SECRET.encode() not in b"".join(received)
    assert not a.is_connected("b")


async def test_a_server_that_does_not_challenge_is_refused_by_a_dialler_with_a_secret(nodes) -> None:
    def accept(frames: list[pb.Envelope]) -> bytes:
        return batch(pb.Envelope(type=pb.HANDSHAKE_ACK, handshake=pb.Handshake(node_id="b", protocol_version=2)))

    a = await nodes("a", secret_config("a", port=None))
    async with impostor(accept) as (address, received):
        with pytest.raises(ConnectFailedError, match="did not prove it holds the shared secret"):
            await a.connect("b", address, timeout=5)
    assert SECRET.encode() not in b"".join(received)


async def test_a_dialler_without_the_secret_is_told_what_to_set(nodes) -> None:
    b = await nodes("b", secret_config("b"))
    a = await nodes("a", grpc_config("a", port=None))
    with pytest.raises(ConnectFailedError, match=r"requires a shared secret: set transport\.grpc\.token"):
        await a.connect("b", b.address, timeout=5)
    assert b.connected_nodes == []


async def test_a_recorded_handshake_cannot_be_replayed(nodes) -> None:
    b = await nodes("b", secret_config("b"))
    async with RawConnection(b.address) as first:
        ack = await first.handshake("raw", "b", SECRET)
        assert ack.refused == ""
    assert b.is_running
    async with RawConnection(b.address) as replay:
        await replay.write(first.sent[0])  # the recorded hello (old nonce) ...
        frames = await replay.read()
        assert frames and frames[0].handshake.challenge
        await replay.write(first.sent[1])  # ... and the recorded proof, for the old nonces
        frames = await replay.read()
        assert frames and frames[0].handshake.refused
        assert frames[0].handshake.code == ErrorCode.UNAUTHENTICATED.value
        assert await replay.read() is None


async def test_a_reflected_server_proof_is_refused(nodes) -> None:
    """The server's own proof sent back as the dialler's: the role is part of what is proved."""
    b = await nodes("b", secret_config("b"))
    async with RawConnection(b.address) as conn:
        await conn.send(hello("raw", "b"))
        frames = await conn.read()
        assert frames
        reflected = frames[0].handshake.proof
        await conn.send(pb.Envelope(type=pb.HANDSHAKE, handshake=pb.Handshake(proof=reflected)))
        frames = await conn.read()
        assert frames and frames[0].handshake.code == ErrorCode.UNAUTHENTICATED.value
    assert b.connected_nodes == []


async def test_frames_sent_before_authentication_are_refused_unparsed(nodes) -> None:
    b = await nodes("b", secret_config("b"))
    b.register("echo", lambda p, ctx: p)
    request = pb.Envelope(type=pb.REQUEST, id=1, method="echo", payload=b"1", serializer="json")
    async with RawConnection(b.address) as conn:
        await conn.send(hello("raw", "b"), request)
        frames = await conn.read()
        assert frames and "before the handshake was authenticated" in frames[0].handshake.refused
    assert b.connected_nodes == []


async def test_an_oversized_first_message_is_refused_unparsed(nodes) -> None:
    b = await nodes("b")
    async with RawConnection(b.address) as conn:
        padding = pb.Envelope(type=pb.NOTIFY, method="x", payload=b"\0" * (hsk.MAX_HANDSHAKE_BYTES + 1))
        await conn.send(hello("raw", "b"), padding)
        assert await conn.read() is None
        assert await conn.call.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert b.connected_nodes == []


@pytest.mark.parametrize("node_id", ["evil\nINFO forged log line", "x" * 300])
async def test_unprintable_or_huge_node_ids_are_refused(nodes, node_id: str) -> None:
    b = await nodes("b")
    async with RawConnection(b.address) as conn:
        ack = await conn.handshake(node_id, "b")
        assert ack.refused
    assert b.connected_nodes == []


# ---------------------------------------------------------------------------- C: who is calling
async def test_handlers_see_how_the_caller_was_authenticated(nodes) -> None:
    seen: list[tuple[bool, str | None]] = []

    def who(p: Any, ctx: CallContext) -> None:
        seen.append((ctx.authenticated, ctx.peer_identity))

    b = await nodes("b", secret_config("b"))
    b.register("who", who)
    a = await nodes("a", secret_config("a", port=None))
    await a.connect("b", b.address)
    await a.call("b", "who")
    plain = await nodes("plain")
    plain.register("who", who)
    c = await nodes("c", grpc_config("c", port=None))
    await c.connect("plain", plain.address)
    await c.call("plain", "who")
    assert seen == [(True, "shared-secret"), (False, None)]


async def test_an_impostor_with_the_secret_cannot_take_a_connected_id(nodes) -> None:
    """Even a peer holding the secret cannot evict a live peer by claiming its id."""
    b = await nodes("b", secret_config("b"))
    real = await nodes("p1", secret_config("p1", port=None))
    real.register("who", lambda p, ctx: "real")
    await real.connect("b", b.address)
    for _ in range(3):  # no flapping: every claim is refused, the real peer stays
        async with RawConnection(b.address) as conn:
            ack = await conn.handshake("p1", "b", SECRET)
            assert "node id 'p1' is already connected" in ack.refused
    assert await b.call("p1", "who") == "real"


# ---------------------------------------------------------------------------- D: pickle
class _Recorded:
    """Unpickling this records that a payload was decoded (it must not be, when refused)."""

    decoded: list[str] = []

    def __reduce__(self) -> Any:
        return (_Recorded.decoded.append, ("decoded",))


async def test_pickle_methods_refuse_unauthenticated_callers_before_decoding(nodes) -> None:
    _Recorded.decoded.clear()
    b = await nodes("b")
    b.register("load", lambda p, ctx: "ran", MethodOptions(serializer="pickle"))
    a = await nodes("a", grpc_config("a", port=None))
    await a.connect("b", b.address)
    with pytest.raises(RemoteExecutionError) as info:
        await a.call("b", "load", _Recorded(), serializer="pickle")
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert "transport.grpc.token" in str(info.value)  # names the fix
    assert _Recorded.decoded == []


async def test_pickle_methods_serve_authenticated_callers(nodes) -> None:
    b = await nodes("b", secret_config("b"))
    b.register("load", lambda p, ctx: sorted(p), MethodOptions(serializer="pickle"))
    a = await nodes("a", secret_config("a", port=None))
    await a.connect("b", b.address)
    assert await a.call("b", "load", {3, 1, 2}, serializer="pickle") == [1, 2, 3]


async def test_authenticated_only_can_be_set_per_method(nodes) -> None:
    b = await nodes("b")
    b.register("open_pickle", lambda p, ctx: p, MethodOptions(serializer="pickle", authenticated_only=False))
    b.register("closed_json", lambda p, ctx: p, MethodOptions(authenticated_only=True))
    a = await nodes("a", grpc_config("a", port=None))
    await a.connect("b", b.address)
    assert await a.call("b", "open_pickle", (1, 2), serializer="pickle") == (1, 2)
    with pytest.raises(RemoteExecutionError) as info:
        await a.call("b", "closed_json", 1)
    assert info.value.code is ErrorCode.PERMISSION_DENIED


async def test_method_names_are_listed_only_to_authenticated_callers(nodes) -> None:
    b = await nodes("b")
    b.register("secret_admin_method", lambda p, ctx: p)
    a = await nodes("a", grpc_config("a", port=None))
    await a.connect("b", b.address)
    with pytest.raises(RemoteExecutionError) as info:
        await a.call("b", "nope")
    assert info.value.code is ErrorCode.METHOD_NOT_FOUND
    assert "secret_admin_method" not in str(info.value)
    debug = await nodes("d", grpc_config("d", debug=True))
    debug.register("secret_admin_method", lambda p, ctx: p)
    await a.connect("d", debug.address)
    with pytest.raises(RemoteExecutionError, match="secret_admin_method"):
        await a.call("d", "nope")


# ---------------------------------------------------------------------------- E: counts
async def test_max_connections_refuses_further_handshakes(nodes) -> None:
    b = await nodes("b", grpc_config("b", max_connections=2))
    b.register("echo", lambda p, ctx: p)
    peers = [await nodes(f"p{i}", grpc_config(f"p{i}", port=None)) for i in range(3)]
    await peers[0].connect("b", b.address)
    await peers[1].connect("b", b.address)
    with pytest.raises(ConnectFailedError, match="max_connections=2"):
        await peers[2].connect("b", b.address, timeout=5)
    assert await peers[0].call("b", "echo", 1) == 1
    gone = asyncio.Event()
    b.on("disconnect", lambda node_id, reason: gone.set() if node_id == "p0" else None)
    await peers[0].disconnect("b")
    await asyncio.wait_for(gone.wait(), 5)  # b frees the slot when it sees the stream end
    await peers[2].connect("b", b.address, timeout=5)
    assert sorted(b.connected_nodes) == ["p1", "p2"]


async def test_health_watch_streams_are_capped(nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_module, "MAX_WATCHERS", 3)
    b = await nodes("b")
    b.register("echo", lambda p, ctx: p)
    async with aio.insecure_channel(b.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(3)]
        for w in watches:
            assert (await w.read()).status == health_pb2.HealthCheckResponse.SERVING
        extra = stub.Watch(health_pb2.HealthCheckRequest(service="any"))
        with pytest.raises(aio.AioRpcError) as info:
            await extra.read()
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for w in watches:
            w.cancel()
    a = await nodes("a", grpc_config("a", port=None))
    await a.connect("b", b.address)
    assert await a.call("b", "echo", "ok") == "ok"


async def test_a_goodbye_in_the_handshake_batch_ends_the_stream(nodes) -> None:
    b = await nodes("b")
    baseline = len(asyncio.all_tasks())
    for i in range(30):
        async with RawConnection(b.address) as conn:
            ack = await conn.handshake(f"g{i}", "b", None, pb.Envelope(type=pb.GOODBYE, reason="bye"))
            assert ack.refused == ""
            assert await asyncio.wait_for(conn.call.code(), 5) is not None  # the server ended it
    assert b.connected_nodes == []
    # every server-side stream task ended with its link
    for _ in range(50):
        if len(asyncio.all_tasks()) <= baseline + 2:
            break
        await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= baseline + 2


async def test_a_stream_that_sends_no_handshake_is_closed(nodes) -> None:
    b = await nodes("b", grpc_config("b", handshake_timeout=0.3))
    async with RawConnection(b.address) as conn:
        assert await asyncio.wait_for(conn.call.code(), 5) is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_connection_that_opens_no_stream_is_closed(nodes) -> None:
    """A TCP connection that speaks HTTP/2 but never opens a stream is closed by the node."""
    b = await nodes("b", grpc_config("b", handshake_timeout=0.5))
    host, port = b.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    # The HTTP/2 client preface and an empty SETTINGS frame; then nothing.
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    await writer.drain()
    try:
        while await asyncio.wait_for(reader.read(65536), 10):
            pass  # the node's SETTINGS, then GOAWAY, then end of stream
    finally:
        writer.close()


async def test_a_connection_that_never_speaks_is_closed(nodes) -> None:
    b = await nodes("b", grpc_config("b", handshake_timeout=0.5))
    host, port = b.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        while await asyncio.wait_for(reader.read(65536), 10):
            pass
    finally:
        writer.close()
