"""A peer killed with kill -9 while a big payload is being sent to it: the call fails with
``ConnectionLostError`` and a human reason, nothing leaks from grpc's internals, once."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from node_comm import ConnectionLostError

MiB = 1024 * 1024
#: Marks of grpc internals that must not reach users: object reprs, Cython modules, the C core.
LEAKS = ("0x", "cygrpc", "_cython", "Core", "execute_batch")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _kill_during_send(nodes: Any, spawn: Any, caplog: pytest.LogCaptureFixture) -> tuple[str, list[str]]:
    """Start a 200 MB call to a peer process, kill -9 it mid-transfer; the error text and the
    disconnect reasons (all logs in ``caplog``)."""
    peer = await spawn("b")
    a = await nodes("a")
    disconnects: list[str] = []
    a.on("disconnect", lambda n, reason: disconnects.append(f"{n}: {reason}"))
    await a.connect("b", peer.address)
    assert await a.call("b", "echo", "hi") == "hi"
    pid = peer.proc.pid
    idle = _rss(pid)
    payload = "x" * (200 * MiB)  # json: a string encodes fast
    with caplog.at_level(logging.DEBUG):
        call = asyncio.ensure_future(a.call("b", "hang", payload, timeout=60))
        # Mid-transfer: the peer holds part of the payload, not all of it (there is no event to
        # wait on in another process: its memory is watched).
        while _rss(pid) - idle < 20 * MiB and not call.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        assert not call.done()
        await peer.kill()
        with pytest.raises(ConnectionLostError) as info:
            await asyncio.wait_for(call, 10)
        text = str(info.value)
        # The exception's traceback holds the frames of the call; a future failed and never
        # awaited in them is reported ("never retrieved") only once they are collected.
        del call, payload, info
        gc.collect()
        await asyncio.sleep(0.3)  # a second disconnect, or a late log line, would show up here
        gc.collect()
    return text, disconnects


async def test_peer_killed_during_a_big_send_fails_the_call_with_a_clean_reason(
    nodes, spawn, caplog: pytest.LogCaptureFixture
) -> None:
    text, disconnects = await _kill_during_send(nodes, spawn, caplog)
    assert "was lost" in text
    for leak in LEAKS:
        assert leak not in text, text
    assert len(disconnects) == 1 and disconnects[0].startswith("b: "), disconnects
    for leak in LEAKS:
        assert leak not in disconnects[0], disconnects[0]
    assert "Internal error from Core" not in caplog.text


async def test_peer_killed_during_a_big_send_logs_no_unretrieved_future(
    nodes, spawn, caplog: pytest.LogCaptureFixture
) -> None:
    await _kill_during_send(nodes, spawn, caplog)
    assert "was never retrieved" not in caplog.text
