"""Progress of chunked payloads over NATS, as over gRPC: the caller sees its request go out and its
reply come in chunk by chunk; the serving node sees the request arrive (the ``transfer`` event);
small calls report nothing; a broadcast reports per target."""

from __future__ import annotations

import asyncio
from typing import Any

from node_comm import MethodOptions

from .conftest import NodesFactory

MiB = 1024 * 1024
CHUNK = 256 * 1024


async def test_progress_of_a_chunked_call_both_ways(nodes: NodesFactory) -> None:
    a = await nodes("a", chunk_size=CHUNK)
    b = await nodes("b", chunk_size=CHUNK)
    b.register("double", lambda p, ctx: bytes(p) + bytes(p), MethodOptions(serializer="raw"))
    b.register("echo", lambda p, ctx: p)
    arriving: list[tuple[str, str, int, int]] = []
    b.on("transfer", lambda node_id, method, done, total: arriving.append((node_id, method, done, total)))
    await a.connect("b")
    seen: list[tuple[str, int, int]] = []
    payload = b"w" * (3 * MiB)
    result = await a.call("b", "double", payload, serializer="raw", progress=lambda d, n, t: seen.append((d, n, t)))
    assert bytes(result) == payload + payload
    sent = [(n, t) for d, n, t in seen if d == "sent"]
    received = [(n, t) for d, n, t in seen if d == "received"]
    assert sent and sent[-1] == (len(payload), len(payload)) and len(sent) >= 4
    assert [n for n, _ in sent] == sorted(n for n, _ in sent)
    assert received and received[-1] == (2 * len(payload), 2 * len(payload)) and len(received) >= 4
    assert len(arriving) >= 4 and arriving[-1] == ("a", "double", len(payload), len(payload))
    seen.clear()
    assert await a.call("b", "echo", "small", progress=lambda d, n, t: seen.append((d, n, t))) == "small"
    assert seen == []  # never called for small calls


async def test_broadcast_progress_names_the_target(nodes: NodesFactory) -> None:
    a = await nodes("a", chunk_size=CHUNK, broadcast_once_min=0)
    for name in ("p1", "p2"):
        p = await nodes(name, chunk_size=CHUNK)
        p.register("size", lambda payload, ctx: b"%d" % len(payload), MethodOptions(serializer="raw"))
        await p.connect("a")
    seen: dict[str, list[int]] = {"p1": [], "p2": []}

    def progress(target: str, direction: str, done: int, total: int) -> None:
        assert direction == "sent"
        seen[target].append(done)

    results = await a.broadcast("size", b"x" * MiB, serializer="raw", progress=progress)
    assert results == {"p1": b"%d" % MiB, "p2": b"%d" % MiB}
    assert seen["p1"][-1] == MiB and seen["p2"][-1] == MiB and len(seen["p1"]) >= 4


async def test_a_failing_progress_callback_does_not_fail_the_call(nodes: NodesFactory) -> None:
    a = await nodes("a", chunk_size=CHUNK)
    b = await nodes("b", chunk_size=CHUNK)
    b.register("size", lambda payload, ctx: b"%d" % len(payload), MethodOptions(serializer="raw"))
    b.on("transfer", lambda *args: 1 / 0)
    await a.connect("b")

    def broken(*args: Any) -> None:
        raise RuntimeError("progress bar crashed")

    assert await asyncio.wait_for(a.call("b", "size", b"z" * MiB, serializer="raw", progress=broken), 10) == b"%d" % MiB
