"""Property-based fuzzing of what a peer can send: handshakes and frames crafted by hypothesis,
sent over real loopback sockets to one running node. Whatever arrives, the node never dies, never
keeps a connection it refused, and still serves a legitimate peer after every example.

``make test`` runs a few dozen examples per property; ``make fuzz`` (``FUZZ_EXAMPLES``) many more.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import pytest
from conftest import SECRET, grpc_config
from grpc import aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawclient import RawConnection, batch, hello

from node_comm import MethodOptions, Node
from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.transport import PROTOCOL_VERSION

T = TypeVar("T")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Served:
    """Node ``b`` (and a legitimate peer ``a`` connected to it) on an event loop of their own, in a
    thread, so that hypothesis drives plain synchronous examples against them."""

    def __init__(self, token: str | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.token = token
        self.b = self.run(self._start_b())
        self.a = self.run(self._start_a())

    def run(self, coro: Awaitable[T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    async def _start_b(self) -> Node:
        b = Node("b", grpc_config("b", token=self.token, handshake_timeout=2))
        b.register("echo", lambda p, ctx: p)
        b.register("load", lambda p, ctx: p, MethodOptions(serializer="pickle"))
        b.register("raw", lambda p, ctx: len(p), MethodOptions(serializer="raw"))
        await b.start()
        return b

    async def _start_a(self) -> Node:
        a = Node("a", grpc_config("a", port=None, token=self.token))
        await a.start()
        await a.connect("b", self.b.address)
        return a

    def still_serving(self) -> None:
        assert self.run(self.a.call("b", "echo", "ok", timeout=10)) == "ok"
        assert self.b.is_running

    def close(self) -> None:
        self.run(self.a.stop())
        self.run(self.b.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    s = Served(None)
    yield s
    s.close()


@pytest.fixture(scope="module")
def served_secret() -> Iterator[Served]:
    s = Served(SECRET)
    yield s
    s.close()


def envelope(
    ftype: int,
    call_id: int,
    method: str,
    payload: bytes,
    serializer: str,
    transfer: int,
    total: int,
    deadline: float | None,
    metadata: dict[str, str],
    reason: str,
) -> pb.Envelope:
    env = pb.Envelope(
        type=ftype,
        id=call_id,
        method=method,
        payload=payload,
        serializer=serializer,  # type: ignore[arg-type]
        transfer=transfer,
        total_size=total,
        reason=reason,
    )
    if deadline is not None:
        env.deadline = deadline
    env.metadata.update(metadata)
    return env


envelopes = st.builds(
    envelope,
    ftype=st.integers(0, 15),
    call_id=st.integers(0, 2**64 - 1),
    method=st.sampled_from(["echo", "load", "raw", "_heartbeat", ""]) | st.text(max_size=12),
    payload=st.sampled_from([b"1", b'"x"', b"\x80\x04K\x01.", b"[[[[[]]]]]"]) | st.binary(max_size=48),
    serializer=st.sampled_from(["json", "pickle", "msgpack", "raw", ""]) | st.text(max_size=6),
    transfer=st.integers(0, 4) | st.integers(0, 2**64 - 1),
    total=st.integers(0, 64) | st.integers(0, 2**40),
    deadline=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    metadata=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    reason=st.text(max_size=8),
)


async def _after_handshake(address: str, node_id: str, secret: str | None, messages: list[bytes]) -> None:
    async with RawConnection(address) as conn:
        ack = await conn.handshake(node_id, "b", secret)
        if ack.refused:
            return
        for data in messages:
            try:
                await conn.write(data)
            except (aio.AioRpcError, asyncio.InvalidStateError):  # the node closed the stream: allowed
                return
        # Read what the node answers for a moment; it may also close the stream.
        for _ in range(3):
            try:
                if await asyncio.wait_for(conn.read(), 0.05) is None:
                    return
            except asyncio.TimeoutError:
                return


@fuzz_settings
@given(batches=st.lists(st.lists(envelopes, min_size=1, max_size=12), min_size=1, max_size=4))
def test_fuzzed_frames_never_kill_the_node(served: Served, batches: list[list[pb.Envelope]]) -> None:
    served.run(_after_handshake(served.b.address, "fuzz", None, [batch(*b) for b in batches]))
    served.still_serving()


@fuzz_settings
@given(messages=st.lists(st.binary(max_size=256), min_size=1, max_size=4))
def test_fuzzed_bytes_never_kill_the_node(served: Served, messages: list[bytes]) -> None:
    served.run(_after_handshake(served.b.address, "fuzzb", None, messages))
    served.still_serving()


@fuzz_settings
@given(
    node_id=st.text(max_size=20),
    expected=st.sampled_from(["b", ""]) | st.text(max_size=4),
    version=st.sampled_from([PROTOCOL_VERSION]) | st.integers(0, 2**32 - 1),
    nonce=st.binary(max_size=40),
    proof=st.binary(max_size=40),
    challenge=st.booleans(),
    extra=st.lists(envelopes, max_size=3),
    second=st.none() | st.binary(max_size=80),
)
def test_fuzzed_handshakes_are_refused_or_harmless(
    served_secret: Served,
    node_id: str,
    expected: str,
    version: int,
    nonce: bytes,
    proof: bytes,
    challenge: bool,
    extra: list[pb.Envelope],
    second: bytes | None,
) -> None:
    """Without the secret nothing gets in: every fuzzed handshake is refused."""

    async def attempt() -> None:
        async with RawConnection(served_secret.b.address) as conn:
            first = pb.Envelope(
                type=pb.HANDSHAKE,
                handshake=pb.Handshake(
                    node_id=node_id,
                    protocol_version=version,
                    expected_node_id=expected,
                    nonce=nonce,
                    proof=proof,
                    challenge=challenge,
                ),
            )
            await conn.send(first, *extra)
            frames = await asyncio.wait_for(conn.read(), 5)
            if frames and frames[0].handshake.challenge and second is not None:
                await conn.write(second)
                frames = await asyncio.wait_for(conn.read(), 5)
            if frames and frames[0].handshake.challenge:
                await conn.send(pb.Envelope(type=pb.HANDSHAKE, handshake=pb.Handshake(proof=proof)))
                frames = await asyncio.wait_for(conn.read(), 5)
            assert not frames or frames[0].handshake.refused, "a fuzzed handshake was accepted"

    served_secret.run(attempt())
    assert served_secret.b.connected_nodes == ["a"]
    served_secret.still_serving()


def test_after_fuzzing_only_the_legitimate_peer_remains(served: Served) -> None:
    """Runs after the properties above (same module fixture): nothing stayed behind."""
    served.run(_after_handshake(served.b.address, "last", None, [batch(hello("x"))]))

    async def settled() -> tuple[list[str], int]:
        for _ in range(100):
            if served.b.connected_nodes == ["a"]:
                break
            await asyncio.sleep(0.02)
        return served.b.connected_nodes, len(asyncio.all_tasks())

    connected, tasks = served.run(settled())
    assert connected == ["a"]
    assert tasks < 50
    served.still_serving()
