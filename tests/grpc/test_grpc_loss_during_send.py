"""A peer killed with kill -9 while a big payload is being sent to it: the call fails with
``ConnectionLostError`` and a human reason, nothing leaks from grpc's internals, once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from node_comm import ConnectionLostError

MiB = 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_peer_killed_during_a_big_send_fails_the_call_with_a_clean_reason(
    nodes, spawn, caplog: pytest.LogCaptureFixture
) -> None:
    peer = await spawn("b")
    a = await nodes("a")
    disconnects: list[tuple[str, str]] = []
    a.on("disconnect", lambda n, reason: disconnects.append((n, reason)))
    await a.connect("b", peer.address)
    assert await a.call("b", "echo", "hi") == "hi"
    pid = peer.proc.pid
    idle = _rss(pid)
    payload = "x" * (200 * MiB)  # json: a string encodes fast
    with caplog.at_level(logging.DEBUG):
        call = asyncio.ensure_future(a.call("b", "hang", payload, timeout=60))
        # Mid-transfer: the peer holds part of the payload, not all of it.
        while _rss(pid) - idle < 20 * MiB and not call.done():
            await asyncio.sleep(0.005)
        assert not call.done()
        await peer.kill()
        with pytest.raises(ConnectionLostError) as info:
            await asyncio.wait_for(call, 10)
        del call, payload
        import gc

        gc.collect()
        await asyncio.sleep(0.3)  # a second disconnect, or a late log line, would show up here
    text = str(info.value)
    for leak in ("0x", "cygrpc", "Core", "_cython", "execute_batch"):
        assert leak not in text, text
    assert len(disconnects) == 1 and disconnects[0][0] == "b"
    for leak in ("0x", "cygrpc", "Core", "_cython"):
        assert leak not in disconnects[0][1], disconnects[0][1]
    assert "was never retrieved" not in caplog.text
    assert "Internal error from Core" not in caplog.text
    print(text)
