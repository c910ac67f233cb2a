"""Raw grpc.aio fan-out baseline, written as a user would without node-comm: participants dial the
coordinator (they are behind NAT) and each holds one bidirectional stream to it; a broadcast writes
one frame (request id + stdlib-JSON payload) to each chosen stream and waits for every reply,
matched by request id per stream and decoded. The coordinator's side runs in the bench process;
participants run in helper processes (``python -m bench.rawfanout ADDRESS PREFIX COUNT``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

from .common import serve_until_stdin_closes

JOIN = "/bench.Fan/Join"
_ID = struct.Struct("<Q")


class _Stream:
    """The coordinator's end of one participant's stream."""

    def __init__(self) -> None:
        self.out: asyncio.Queue[bytes] = asyncio.Queue()
        self.pending: dict[int, asyncio.Future[bytes]] = {}


class Coordinator:
    """A grpc.aio server that participants join; :meth:`broadcast` fans one payload out to them."""

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.joined = asyncio.Event()
        self.expected = 0
        self._ids = itertools.count(1)
        self.server: grpc.aio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        self.server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(self._join)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Fan", {"Join": handler}),))
        port = self.server.add_insecure_port(f"{host}:0")
        await self.server.start()
        return f"{host}:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    async def _join(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        it = requests.__aiter__()
        name = (await it.__anext__()).decode()
        stream = self.streams[name] = _Stream()
        if len(self.streams) >= self.expected:
            self.joined.set()

        async def reader() -> None:
            async for frame in it:
                (rid,) = _ID.unpack_from(frame)
                fut = stream.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(frame[8:])

        task = asyncio.create_task(reader())
        try:
            while True:
                yield await stream.out.get()
        finally:
            task.cancel()
            self.streams.pop(name, None)

    async def broadcast(self, targets: list[str], payload: Any) -> dict[str, Any]:
        """One frame to each target's stream; every reply decoded."""
        rid = next(self._ids)
        frame = _ID.pack(rid) + json.dumps(payload).encode()
        loop = asyncio.get_running_loop()
        futures = []
        for name in targets:
            stream = self.streams[name]
            fut: asyncio.Future[bytes] = loop.create_future()
            stream.pending[rid] = fut
            stream.out.put_nowait(frame)
            futures.append(fut)
        replies = await asyncio.gather(*futures)
        return {name: json.loads(r) for name, r in zip(targets, replies, strict=True)}


# ---------------------------------------------------------------------------------------------- participants
async def _participant(address: str, name: str, joined: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(JOIN)()
        await call.write(name.encode())
        joined.set()
        while True:
            frame = await call.read()
            if frame is grpc.aio.EOF:
                return
            await call.write(frame[:8] + json.dumps(json.loads(frame[8:])).encode())


async def main(address: str, prefix: str, count: int) -> None:
    events = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(_participant(address, f"{prefix}-{k}", e)) for k, e in enumerate(events)]
    await asyncio.gather(*(e.wait() for e in events))
    await serve_until_stdin_closes({"ready": count})
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
