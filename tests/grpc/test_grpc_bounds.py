"""Resource bounds against a hostile peer, driven from a raw gRPC client over loopback: the bytes
being reassembled (node-wide), stalled and reused transfers, oversized frames, floods of bad frames
and heartbeats, and peers that never read. The node stays up and keeps serving others."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest
from conftest import grpc_config
from rawclient import chunk, raw_client, request

from node_comm import CallTimeoutError, HeartbeatConfig
from node_comm_grpc.link import MAX_BAD_FRAMES
from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.reassembly import MAX_DROPPED

KiB = 1024
MiB = 1024 * KiB
WAIT = 10.0


async def eventually(condition) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``condition()`` holds (for states no event announces), at most ``WAIT`` seconds."""
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def serve(nodes, **grpc_opts):  # type: ignore[no-untyped-def]
    """Node ``b`` (with ``grpc_opts``) serving ``echo`` and ``hang``, and node ``a`` connected to it."""
    grpc_opts.setdefault("handshake_timeout", 2.0)
    b = await nodes("b", grpc_config("b", **grpc_opts))
    b.register("echo", lambda p, ctx: p)

    async def hang(payload: object, ctx: object) -> None:
        await asyncio.Event().wait()

    b.register("hang", hang)
    a = await nodes("a")
    await a.connect("b", b.address)
    return a, b


async def still_serving(a, b) -> None:  # type: ignore[no-untyped-def]
    assert await a.call("b", "echo", "still here", timeout=WAIT) == "still here"
    assert b.is_running


def gone(node, peer: str) -> asyncio.Event:  # type: ignore[no-untyped-def]
    """Set when ``node`` loses ``peer``; the reason lands in ``event.reason``."""
    event = asyncio.Event()

    def on(peer_id: str, reason: str) -> None:
        if peer_id == peer:
            event.reason = reason  # type: ignore[attr-defined]
            event.set()

    node.on("disconnect", on)
    return event


def head(msg_id: int, transfer: int, total: int, method: str = "echo") -> pb.Envelope:
    return request(msg_id, method, b"", transfer=transfer, total_size=total)


async def test_receive_buffer_is_one_budget_for_the_whole_node(nodes) -> None:
    a, b = await serve(nodes, max_receive_buffer=1 * MiB)
    budget = b.transport.receive_budget
    lost = gone(b, "raw1")
    async with raw_client(b.address, "raw1") as one, raw_client(b.address, "raw2") as two:
        await one.send(head(1, 1, 700 * KiB))
        await two.send(head(1, 1, 700 * KiB))  # another connection: same budget
        _, err = await two.read_until(1)
        assert err.error.code == "RESOURCE_EXHAUSTED" and "max_receive_buffer=1048576" in err.error.message
        assert budget.used == 700 * KiB
        # A head allocates nothing: the buffer holds what arrived, not what was announced.
        await one.send_bytes(chunk(1, b"z" * 1000))
        await one.send(request(50))
        await one.read_until(50)  # answered: the chunk before it was handled too
        assert len(b.transport._links["raw1"]._partials[1].buf) == 1000
        one.call.cancel()
        await asyncio.wait_for(lost.wait(), WAIT)
        assert budget.used == 0  # a closed link gives its transfers' budget back
        # the whole budget serves the next transfer, to its end
        await two.send(head(2, 2, 1 * MiB))
        await two.send_bytes(chunk(2, b'"' + b"y" * (1 * MiB - 2) + b'"'))
        _, resp = await two.read_until(2)
        assert resp.type == pb.RESPONSE and len(resp.payload) == 1 * MiB, resp.error
        assert budget.used == 0
    await still_serving(a, b)


async def test_stalled_transfer_is_dropped_after_transfer_timeout(nodes) -> None:
    a, b = await serve(nodes, transfer_timeout=0.3)
    budget = b.transport.receive_budget
    async with raw_client(b.address) as raw:
        await raw.send(head(5, 1, 10 * KiB))
        await raw.send_bytes(chunk(1, b"z" * 100))
        t0 = time.monotonic()
        _, err = await asyncio.wait_for(raw.read_until(5), WAIT)
        assert time.monotonic() - t0 >= 0.25
        assert err.type == pb.ERROR and err.error.code == "DEADLINE_EXCEEDED"
        assert "stalled" in err.error.message and "transfer_timeout" in err.error.message
        assert budget.used == 0
        # its late chunks are skipped; the stream still serves
        await raw.send_bytes(chunk(1, b"z" * 100))
        await raw.send(request(6))
        _, resp = await raw.read_until(6)
        assert resp.type == pb.RESPONSE
    await still_serving(a, b)


async def test_transfer_id_reuse_is_refused_without_leaking_budget(nodes) -> None:
    a, b = await serve(nodes)
    budget = b.transport.receive_budget
    async with raw_client(b.address) as raw:
        await raw.send(head(1, 7, 3), head(2, 7, 50 * KiB))
        _, err = await raw.read_until(2)
        assert err.error.code == "INVALID_ARGUMENT" and "reuses transfer id 7" in err.error.message
        assert budget.used == 3
        await raw.send_bytes(chunk(7, b'"x"'))
        _, resp = await raw.read_until(1)
        assert resp.type == pb.RESPONSE and resp.payload == b'"x"'
        assert budget.used == 0
    await still_serving(a, b)


async def test_oversized_unchunked_frame_is_refused(nodes) -> None:
    a, b = await serve(nodes, max_payload_size=4 * KiB)
    async with raw_client(b.address) as raw:
        await raw.send(request(1, payload=b'"' + b"x" * (10 * KiB) + b'"'))
        _, err = await raw.read_until(1)
        assert err.error.code == "RESOURCE_EXHAUSTED" and "max_payload_size=4096" in err.error.message
        await raw.send(request(2))
        _, resp = await raw.read_until(2)
        assert resp.type == pb.RESPONSE
    await still_serving(a, b)


async def test_refused_transfers_remembered_are_bounded(nodes) -> None:
    a, b = await serve(nodes, max_payload_size=4 * KiB)
    async with raw_client(b.address) as raw:
        n = MAX_DROPPED * 4
        await raw.send(*(head(i, i, 1 * MiB) for i in range(1, n + 1)))
        refused = 0
        while refused < n:
            refused += sum(1 for env in await raw.read() if env.error.code == "RESOURCE_EXHAUSTED")
        assert len(b.transport._links["raw"]._dropped) == MAX_DROPPED
    await still_serving(a, b)


async def test_a_flood_of_bad_frames_closes_that_stream(nodes) -> None:
    a, b = await serve(nodes)
    lost = gone(b, "raw")
    async with raw_client(b.address) as raw:
        await raw.send(*(pb.Envelope(type=99, id=i) for i in range(1000)))  # type: ignore[arg-type]
        code, details = await raw.status()
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "malformed or unknown frames" in details
        await asyncio.wait_for(lost.wait(), WAIT)
        assert f"sent {MAX_BAD_FRAMES + 1} malformed" in lost.reason  # type: ignore[attr-defined]
    await still_serving(a, b)


async def test_a_heartbeat_flood_spawns_no_task_per_frame(nodes) -> None:
    a, b = await serve(nodes)
    async with raw_client(b.address) as raw:
        await raw.send(*(pb.Envelope(type=pb.HEARTBEAT) for _ in range(20000)), request(1))
        before, resp = await asyncio.wait_for(raw.read_until(1), WAIT)
        assert resp.type == pb.RESPONSE
        acks = [env for env in before if env.type == pb.HEARTBEAT_ACK]
        assert 1 <= len(acks) <= 2, len(acks)
    await still_serving(a, b)


async def test_any_message_counts_as_liveness(nodes) -> None:
    b = await nodes("b", grpc_config("b", heartbeat=HeartbeatConfig(True, 0.1, 0.8)))
    b.register("echo", lambda p, ctx: p)
    lost = gone(b, "raw")
    async with raw_client(b.address) as raw:
        # This client never answers heartbeats, but it talks: it stays connected.
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 2.0:  # well past heartbeat.timeout
            i += 1
            await raw.send(pb.Envelope(type=pb.NOTIFY, method="echo", serializer="json", payload=b"1"))
            await asyncio.sleep(0.05)
        assert not lost.is_set() and b.is_connected("raw")
        # silent, it is dropped
        await asyncio.wait_for(lost.wait(), WAIT)
        assert "heartbeat timeout" in lost.reason  # type: ignore[attr-defined]


async def test_a_peer_that_never_reads_is_disconnected_and_its_tasks_end(nodes) -> None:
    a, b = await serve(nodes, send_queue_bytes=64 * KiB, stall_timeout=0.5)
    baseline = len(asyncio.all_tasks())
    lost = gone(b, "raw")
    big = b'"' + b"r" * (64 * KiB) + b'"'
    async with raw_client(b.address) as raw:
        # Replies it never reads: about 40 MiB, more than every buffer on the way.
        for start in range(0, 640, 64):
            await raw.send(*(request(i, payload=big) for i in range(start + 1, start + 65)))
        await asyncio.wait_for(lost.wait(), WAIT)
        assert "is not reading its stream" in lost.reason  # type: ignore[attr-defined]
        assert "stall_timeout" in lost.reason  # type: ignore[attr-defined]
        await still_serving(a, b)
        code, details = await raw.status()
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "not reading" in details
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline + 2)
    assert not b._peers.get("raw")


async def test_refused_calls_to_a_peer_that_never_reads_hold_no_tasks(nodes) -> None:
    a, b = await serve(nodes, send_queue_bytes=64 * KiB, stall_timeout=30.0, max_concurrent_calls_per_peer=2)
    lost = gone(b, "raw")
    batch = 2000
    peak = 0
    async with raw_client(b.address) as raw:
        await raw.send(request(1, "hang"), request(2, "hang"))
        # Each refused with RESOURCE_EXHAUSTED; the replies are never read. Their tasks must not
        # pile up waiting for queue space (one batch's worth at most, never growing).
        i = 3
        while not lost.is_set():
            peak = max(peak, len(b._background))
            await raw.send(*(request(n, "hang", metadata={"pad": "p" * 200}) for n in range(i, i + batch)))
            i += batch
            assert i < 2_000_000, "never disconnected"
        assert "is not reading its stream" in lost.reason  # type: ignore[attr-defined]
        assert "send_queue_bytes=65536" in lost.reason  # type: ignore[attr-defined]
        assert i > 4 * batch  # several batches were refused before
    assert peak <= 3 * batch, peak
    await eventually(lambda: not b._background)  # and those of the last batch end at once
    await still_serving(a, b)


async def test_deadlines_hold_against_a_frozen_peer_process(nodes, spawn) -> None:
    peer = await spawn("b")
    a = await nodes("a", grpc_config("a", send_queue_bytes=256 * KiB))
    c = await nodes("c")
    c.register("echo", lambda p, ctx: p)
    await a.connect("b", peer.address)
    await a.connect("c", c.address)
    assert await a.call("b", "echo", "hi") == "hi"
    disconnects: list[str] = []
    a.on("disconnect", lambda n, reason: disconnects.append(reason))
    peer.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(CallTimeoutError):  # 32 MiB cannot all be written to a process that is stopped
            await asyncio.wait_for(a.call("b", "echo", "x" * (32 * MiB), timeout=1.0), WAIT)
        assert time.monotonic() - t0 < 2.5
        t0 = time.monotonic()
        results = await asyncio.wait_for(a.broadcast("echo", "all", timeout=1.0), WAIT)
        assert time.monotonic() - t0 < 2.5
        assert results["c"] == "all" and isinstance(results["b"], CallTimeoutError)
        assert await a.call("c", "echo", "others are served") == "others are served"
    finally:
        peer.signal(signal.SIGCONT)
    # The peer reads on: the abandoned transfer was aborted, and the stream was never cancelled
    # (stopping the callers left every write whole): the same link still works.
    assert await a.call("b", "echo", "back", timeout=WAIT) == "back"
    assert disconnects == []
