"""Memory transport vs the asyncio floor (a hand-written queue + one Task per request + stdlib json)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from node_comm import Node, NodeConfig

from .common import Settings, conc_loop, log, seq_loop, small_payload
from .report import Results


class AsyncioFloor:
    """The least a hand-written in-process RPC does: the caller puts ``(json bytes, Future)`` on an
    ``asyncio.Queue``; the server starts one Task per request, which decodes, runs the handler,
    encodes and resolves the Future; the caller decodes the reply."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, asyncio.Future[bytes]]] = asyncio.Queue()
        self.server: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.cancel()

    @staticmethod
    async def _handler(payload: Any) -> Any:
        return payload

    async def _one(self, data: bytes, fut: asyncio.Future[bytes]) -> None:
        result = await self._handler(json.loads(data))
        if not fut.done():
            fut.set_result(json.dumps(result).encode())

    async def _serve(self) -> None:
        get = self.queue.get
        while True:
            data, fut = await get()
            task = asyncio.create_task(self._one(data, fut))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def call(self, payload: Any) -> Any:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((json.dumps(payload).encode(), fut))
        return json.loads(await fut)


async def echo(payload: Any, ctx: Any) -> Any:
    return payload


async def run(settings: Settings, res: Results) -> None:
    log("memory transport vs asyncio floor ...")
    floor = AsyncioFloor()
    await floor.start()
    a = Node("bench-a", NodeConfig(node_id="bench-a"))
    b = Node("bench-b", NodeConfig(node_id="bench-b"))
    b.register("echo", echo)
    await a.start()
    await b.start()
    await a.connect("bench-b")
    try:
        call = a.call

        async def node_call(i: int) -> Any:
            return await call("bench-b", "echo", small_payload(i))

        async def floor_call(i: int) -> Any:
            return await floor.call(small_payload(i))

        assert await node_call(1) == small_payload(1)
        assert await floor_call(1) == small_payload(1)
        from .common import interleave

        secs, conc = settings.seconds, settings.concurrency
        seq = await interleave(
            {"node-comm": lambda: seq_loop(node_call, secs), "asyncio floor": lambda: seq_loop(floor_call, secs)},
            settings.rounds,
        )
        na = res.figure("memory.seq", "node-comm", seq["node-comm"], "calls/s")
        nb = res.figure("memory.seq", "asyncio floor", seq["asyncio floor"], "calls/s")
        res.ratio("memory seq calls/s", na, nb, 1.0)
        cc = await interleave(
            {
                "node-comm": lambda: conc_loop(node_call, secs, conc),
                "asyncio floor": lambda: conc_loop(floor_call, secs, conc),
            },
            settings.rounds,
        )
        ca = res.figure("memory.conc64", "node-comm", cc["node-comm"], "calls/s")
        cb = res.figure("memory.conc64", "asyncio floor", cc["asyncio floor"], "calls/s")
        res.ratio(f"memory {conc}-concurrent calls/s", ca, cb, 1.0)
    finally:
        await a.stop()
        await b.stop()
        await floor.stop()
