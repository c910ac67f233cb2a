"""Progress of chunked transfers over NATS, as over gRPC: the caller sees its request go out and its
reply come in; the serving node sees the request arrive (``transfer``); small calls report nothing;
a broadcast names each target."""

from __future__ import annotations

from typing import Any

from node_comm import MethodOptions

from .conftest import NodesFactory

MiB = 1024 * 1024


async def test_progress_of_a_chunked_call_both_ways(nodes: NodesFactory) -> None:
    a = await nodes("a", chunk_size=256 * 1024)
    b = await nodes("b", chunk_size=256 * 1024)
    b.register("double", lambda p, ctx: p + p, MethodOptions(serializer="raw"))
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
    a = await nodes("a", chunk_size=256 * 1024)
    for name in ("p1", "p2"):
        p = await nodes(name)
        p.register("size", lambda payload, ctx: b"%d" % len(payload), MethodOptions(serializer="raw"))
        await p.connect("a")
    seen: dict[str, list[int]] = {"p1": [], "p2": []}

    def progress(target: str, direction: str, done: int, total: int) -> None:
        assert direction == "sent"
        seen[target].append(done)

    results: Any = await a.broadcast("size", b"x" * MiB, serializer="raw", progress=progress)
    assert results == {"p1": b"%d" % MiB, "p2": b"%d" % MiB}
    assert seen["p1"][-1] == MiB and seen["p2"][-1] == MiB
