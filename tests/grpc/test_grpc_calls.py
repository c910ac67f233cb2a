"""Calls over the grpc transport: both ways, dial-only peers, concurrency, large payloads, limits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SECRET, grpc_config

from node_comm import (
    ConnectFailedError,
    DisconnectKind,
    ErrorCode,
    MethodOptions,
    Node,
    PayloadTooLargeError,
    RemoteExecutionError,
)

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


async def echo(payload: object, ctx: object) -> object:
    return payload


def test_seed_grpc_example_runs_as_written() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart_grpc.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "Result: {'echo': {'msg': 'hello'}}" in out.stdout


async def test_calls_both_ways_after_one_connect(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b")
    seen: list[tuple[str, str | None]] = []
    b.on("connect", lambda node_id, address: seen.append((node_id, address)))
    a.register("echo", echo)
    b.register("echo", echo)
    await a.connect("b", b.address)
    assert await a.call("b", "echo", {"x": 1}) == {"x": 1}
    assert b.is_connected("a")
    assert await b.call("a", "echo", [1, 2]) == [1, 2]
    assert seen == [("a", a.address)]


async def test_dial_only_node_is_a_full_peer(nodes) -> None:
    server = await nodes("server")
    participant = await nodes("participant", grpc_config("participant", port=None))
    assert participant.address is None
    participant.register("train", lambda payload, ctx: {"round": payload, "by": ctx.source})
    await participant.connect("server", server.address)
    assert server.connected_nodes == ["participant"]
    assert await server.call("participant", "train", 3) == {"round": 3, "by": "server"}


async def test_thousand_concurrent_calls(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b")

    async def double(payload: int, ctx: object) -> int:
        await asyncio.sleep(0)
        return payload * 2

    b.register("double", double)
    await a.connect("b", b.address)
    results = await asyncio.gather(*(a.call("b", "double", i) for i in range(1000)))
    assert results == [i * 2 for i in range(1000)]


async def test_callers_cancelled_while_their_frames_are_written_leave_the_link_intact(nodes) -> None:
    # An idle link starts a write in the sender's own step: cancelling that sender (and those
    # whose frames queued behind it) must neither cancel the gRPC stream nor lose later frames.
    a = await nodes("a")
    b = await nodes("b")
    b.register("echo", echo)
    await a.connect("b", b.address)
    lost: list[str] = []
    a.on("disconnect", lambda node_id, reason: lost.append(reason))
    for round_ in range(20):
        callers = [asyncio.ensure_future(a.call("b", "echo", i)) for i in range(1 + round_ % 5)]
        await asyncio.sleep(0)  # each caller has queued or started writing its request
        for c in callers:
            c.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert await a.call("b", "echo", round_) == round_
    assert lost == []
    assert a.is_connected("b") and b.is_connected("a")


async def test_200mib_payload_while_small_calls_keep_flowing(nodes) -> None:
    a = await nodes("a", grpc_config("a", token=SECRET))
    b = await nodes("b", grpc_config("b", token=SECRET))
    b.register("size", lambda payload, ctx: len(payload), MethodOptions(serializer="pickle"))
    b.register("echo", echo)
    await a.connect("b", b.address)
    blob = os.urandom(1024) * (200 * 1024)
    big = asyncio.ensure_future(a.call("b", "size", blob, serializer="pickle", timeout=60))
    await asyncio.sleep(0.05)  # let the transfer start
    small = [await a.call("b", "echo", i) for i in range(20)]
    assert small == list(range(20))
    assert not big.done(), "small calls should not wait behind the big transfer"
    assert await big == len(blob)


async def test_large_result_comes_back_whole(nodes) -> None:
    a = await nodes("a", grpc_config("a", token=SECRET))
    b = await nodes("b", grpc_config("b", token=SECRET))
    b.register("make", lambda n, ctx: bytes(range(256)) * (n // 256), MethodOptions(serializer="pickle"))
    await a.connect("b", b.address)
    data = await a.call("b", "make", 20 * MiB, serializer="pickle")
    assert data == bytes(range(256)) * (20 * MiB // 256)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# Both nodes run in this process, so the 1 GiB call needs about 5.5 GiB at its peak (payload,
# pickled copy, received chunks, joined payload, unpickled copy) and ~17 s on 2 cores.
# RUN_HUGE=1 forces it, RUN_HUGE=0 skips it; by default it runs when 8 GiB are available.
_huge = os.environ.get("RUN_HUGE", "")


@pytest.mark.skipif(
    _huge == "0" or (_huge != "1" and _available_memory() < 8 * 1024 * MiB),
    reason="1 GiB payload needs ~5.5 GiB of memory (RUN_HUGE=1 forces it)",
)
async def test_1gib_payload(nodes) -> None:
    a = await nodes("a", grpc_config("a", token=SECRET))
    b = await nodes("b", grpc_config("b", token=SECRET))
    b.register("size", lambda payload, ctx: len(payload), MethodOptions(serializer="pickle"))
    await a.connect("b", b.address)
    blob = b"\x01" * (1024 * MiB)
    assert await a.call("b", "size", blob, serializer="pickle", timeout=120) == len(blob)


async def test_max_payload_size_fails_that_call_only(nodes) -> None:
    small = 1 * MiB
    a = await nodes("a", grpc_config("a", token=SECRET, chunk_size=64 * 1024, max_payload_size=small))
    b = await nodes("b", grpc_config("b", token=SECRET, chunk_size=64 * 1024, max_payload_size=small))
    c = await nodes("c", grpc_config("c", token=SECRET, chunk_size=64 * 1024))
    for n in (a, b, c):
        n.register("size", lambda payload, ctx: len(payload), MethodOptions(serializer="pickle"))
        n.register("make", lambda size, ctx: b"x" * size, MethodOptions(serializer="pickle"))
    await a.connect("b", b.address)
    await c.connect("b", b.address)
    # sender side: a refuses to send
    with pytest.raises(PayloadTooLargeError) as info:
        await a.call("b", "size", b"x" * (2 * small), serializer="pickle")
    assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
    # receiver side: b refuses what c sends, and drops the chunks
    with pytest.raises(RemoteExecutionError) as rinfo:
        await c.call("b", "size", b"x" * (2 * small), serializer="pickle")
    assert rinfo.value.code is ErrorCode.RESOURCE_EXHAUSTED
    # a result over b's limit: the caller gets RESOURCE_EXHAUSTED, not a timeout
    with pytest.raises(RemoteExecutionError) as rinfo:
        await c.call("b", "make", 2 * small, serializer="pickle", timeout=10)
    assert rinfo.value.code is ErrorCode.RESOURCE_EXHAUSTED
    # the connections keep working
    assert await a.call("b", "size", b"y" * 1000, serializer="pickle") == 1000
    assert await c.call("b", "size", b"y" * (small // 2), serializer="pickle") == small // 2
    assert b.connected_nodes == ["a", "c"]


class _Boom:
    """Decoding this with pickle would record that the payload was decoded."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_decoded.append, ("decoded",))


_decoded: list[str] = []


async def test_wrong_serializer_refused_before_decoding(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b")
    b.register("echo", echo)  # json only
    await a.connect("b", b.address)
    with pytest.raises(RemoteExecutionError) as info:
        await a.call("b", "echo", _Boom(), serializer="pickle")
    assert info.value.code is ErrorCode.SERIALIZER_MISMATCH
    assert _decoded == []


async def test_connect_to_closed_port_fails_fast(nodes) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = await nodes("a")
    t0 = time.monotonic()
    with pytest.raises(ConnectFailedError) as info:
        await a.connect("b", f"127.0.0.1:{port}", timeout=3)
    assert time.monotonic() - t0 < 3
    assert f"127.0.0.1:{port}" in str(info.value)
    assert not a.is_connected("b")


async def test_connect_timeout_when_nothing_answers(nodes) -> None:
    import socket

    # A listening socket that never speaks HTTP/2: the handshake cannot complete.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        a = await nodes("a")
        t0 = time.monotonic()
        with pytest.raises(ConnectFailedError):
            await a.connect("b", f"127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - t0 < 2.0


async def test_wrong_node_id_at_address(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b")
    with pytest.raises(ConnectFailedError, match="is node 'b', not 'c'"):
        await a.connect("c", b.address)
    assert a.connected_nodes == [] and b.connected_nodes == []
    await a.connect("b", b.address)
    assert b.connected_nodes == ["a"]


async def test_a_second_node_cannot_take_a_connected_id(nodes) -> None:
    """One live connection per node id: a second claim is refused while the first answers."""
    b = await nodes("b")
    a1 = await nodes("a")
    events: list[tuple[str, str]] = []
    b.on("connect", lambda n, addr: events.append(("connect", n)))
    b.on("disconnect", lambda n, reason: events.append(("disconnect", n)))
    a1.register("who", lambda p, ctx: "first")
    await a1.connect("b", b.address)
    a2 = Node("a", grpc_config("a"))
    await a2.start()
    try:
        a2.register("who", lambda p, ctx: "impostor")
        with pytest.raises(ConnectFailedError, match="node id 'a' is already connected"):
            await a2.connect("b", b.address)
        assert await b.call("a", "who") == "first"
        assert events == [("connect", "a")]
        assert a1.is_connected("b") and not a2.is_connected("b")
    finally:
        await a2.stop()


async def test_a_restarted_peer_replaces_its_dead_link_at_once(nodes, spawn) -> None:
    """The old connection of a node id that no longer answers (its process frozen, the TCP
    connection still open) is replaced by a new claim within the liveness probe, not a timeout."""
    b = await nodes("b")
    events: list[tuple[str, str]] = []
    b.on("connect", lambda n, addr: events.append(("connect", n)))
    b.on("disconnect", lambda n, reason: events.append(("disconnect", n)))
    kinds: list[object] = []
    b.on("disconnect", lambda n, reason: kinds.append(reason.kind))
    old = await spawn("a", "none", "--connect", "b", b.address)
    assert await b.call("a", "echo", "old") == "old"
    old.signal(signal.SIGSTOP)
    try:
        a2 = Node("a", grpc_config("a"))
        await a2.start()
        try:
            a2.register("echo", lambda p, ctx: f"new {p}")
            await a2.connect("b", b.address, timeout=8)
            assert await b.call("a", "echo", "x") == "new x"
            assert events == [("connect", "a"), ("disconnect", "a"), ("connect", "a")]
            assert kinds == [DisconnectKind.REPLACED]
        finally:
            await a2.stop()
    finally:
        old.signal(signal.SIGCONT)


async def test_graceful_stop_finishes_inflight_call_and_tells_peer(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b", grpc_config("b", shutdown_grace=5.0))
    started = asyncio.Event()

    async def slow(payload: object, ctx: object) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "done"

    b.register("slow", slow)
    reasons: list[str] = []
    gone = asyncio.Event()
    a.on("disconnect", lambda n, reason: (reasons.append(reason), gone.set()))
    await a.connect("b", b.address)
    call = asyncio.ensure_future(a.call("b", "slow"))
    await started.wait()
    await b.stop()
    assert await call == "done"
    await asyncio.wait_for(gone.wait(), 5)
    assert reasons == ["node 'b' stopped"]


async def test_notify_and_broadcast(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b")
    c = await nodes("c", grpc_config("c", port=None))
    got = asyncio.Event()
    b.register("poke", lambda p, ctx: got.set())
    b.register("echo", echo)
    c.register("echo", echo)
    await a.connect("b", b.address)
    await c.connect("a", a.address)
    await a.notify("b", "poke", None)
    await asyncio.wait_for(got.wait(), 5)
    assert await a.broadcast("echo", 7) == {"b": 7, "c": 7}


async def test_broadcast_hands_each_target_its_own_outcome(nodes) -> None:
    """A broadcast queues small requests on every link at once; what the fast path cannot take
    (a payload past the inline size, metadata past the frame limit) goes through send, per target."""
    a = await nodes("a")
    peers = [await nodes(f"p{i}", grpc_config(f"p{i}", port=None)) for i in range(3)]
    for p in peers:
        p.register("echo", echo)
        await p.connect("a", a.address)
    assert await a.broadcast("echo", "x" * 100) == {f"p{i}": "x" * 100 for i in range(3)}
    big = "y" * (64 * 1024)  # inline frame: not the fast path
    assert await a.broadcast("echo", big) == {f"p{i}": big for i in range(3)}
    out = await a.broadcast("echo", 1, metadata={"k": "z" * (1400 * 1024)})
    assert sorted(out) == ["p0", "p1", "p2"]
    assert all(isinstance(v, PayloadTooLargeError) and "metadata too large" in str(v) for v in out.values())
    assert await a.broadcast("echo", 2) == {"p0": 2, "p1": 2, "p2": 2}  # the links are fine


async def test_shared_pair_fixture(pair) -> None:
    """The ``pair`` fixture the contract suite uses works for every transport, grpc included."""
    a, b = pair
    b.register("echo", echo)
    a.register("echo", echo)
    assert await a.call("b", "echo", "x") == "x"
    assert await b.call("a", "echo", "y") == "y"


async def test_concurrent_connects_to_one_node_make_one_link(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b")
    events: list[str] = []
    b.on("connect", lambda n, addr: events.append("connect"))
    b.on("disconnect", lambda n, reason: events.append("disconnect"))
    await asyncio.gather(*(a.connect("b", b.address) for _ in range(5)))
    assert a.transport.links == ["b"]  # type: ignore[attr-defined]
    b.register("echo", echo)
    assert await a.call("b", "echo", 1) == 1
    assert events == ["connect"]


async def test_server_may_call_the_dialler_from_its_connect_event(nodes) -> None:
    b = await nodes("b")
    a = await nodes("a", grpc_config("a", port=None))
    a.register("echo", echo)
    answers: asyncio.Queue[object] = asyncio.Queue()

    async def greet(node_id: str, address: str | None) -> None:
        await b.notify(node_id, "echo", "early notify")
        await answers.put(await b.call(node_id, "echo", "early call"))

    b.on("connect", greet)
    await a.connect("b", b.address)
    assert await asyncio.wait_for(answers.get(), 5) == "early call"


async def test_receive_buffer_bounds_concurrent_large_payloads(nodes) -> None:
    a = await nodes("a", grpc_config("a", token=SECRET, chunk_size=64 * 1024))
    b = await nodes("b", grpc_config("b", token=SECRET, chunk_size=64 * 1024, max_receive_buffer=3 * MiB))
    b.register("size", lambda payload, ctx: len(payload), MethodOptions(serializer="pickle"))
    await a.connect("b", b.address)
    blob = b"q" * (2 * MiB)
    results = await asyncio.gather(
        *(a.call("b", "size", blob, serializer="pickle", timeout=30) for _ in range(4)), return_exceptions=True
    )
    ok = [r for r in results if r == len(blob)]
    refused = [r for r in results if isinstance(r, RemoteExecutionError)]
    assert ok and refused, results
    assert all(r.code is ErrorCode.RESOURCE_EXHAUSTED for r in refused)
    assert len(ok) + len(refused) == 4
    # once the transfers are done the buffer is free again
    assert await a.call("b", "size", blob, serializer="pickle") == len(blob)


async def test_connect_retries_until_the_peer_is_up(nodes) -> None:
    """A participant started before its coordinator: connect(retry=...) dials until it is up."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = await nodes("a", grpc_config("a", port=None))
    dialling = asyncio.ensure_future(a.connect("b", f"127.0.0.1:{port}", retry=20, timeout=1))
    await asyncio.sleep(0.3)  # the first attempts fail: nothing listens yet
    assert not dialling.done()
    b = await nodes("b", grpc_config("b", port=port))
    b.register("echo", echo)
    await asyncio.wait_for(dialling, 20)
    assert await a.call("b", "echo", 1) == 1
