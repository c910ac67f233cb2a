"""Raw grpc.aio baselines, written as a user would without node-comm: a unary echo (one RPC per
call) and one bidirectional stream per client carrying every call, multiplexed by request id.
No .proto: generic handlers move bytes; the small payload is stdlib JSON, as in the floor."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import grpc

UNARY = "/bench.Echo/Unary"
BYTES = "/bench.Echo/Bytes"
BIDI = "/bench.Echo/Bidi"
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
_ID = struct.Struct("<Q")


# ---------------------------------------------------------------------------------------------- server
async def _unary(request: bytes, context: Any) -> bytes:
    return json.dumps(json.loads(request)).encode()


async def _bytes(request: bytes, context: Any) -> bytes:
    return request


async def _bidi(request_iterator: Any, context: Any) -> Any:
    out: asyncio.Queue[bytes | None] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(frame: bytes) -> None:
        result = json.loads(frame[8:])  # the handler: echo
        out.put_nowait(frame[:8] + json.dumps(result).encode())

    async def reader() -> None:
        try:
            async for frame in request_iterator:
                t = asyncio.create_task(handle(frame))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        finally:
            out.put_nowait(None)

    rt = asyncio.create_task(reader())
    try:
        while True:
            item = await out.get()
            if item is None:
                return
            yield item
    finally:
        rt.cancel()


async def start_server(host: str = "127.0.0.1") -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=UNLIMITED)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
                    "Bytes": grpc.unary_unary_rpc_method_handler(_bytes),
                    "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
                },
            ),
        )
    )
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    return server, f"{host}:{port}"


# ---------------------------------------------------------------------------------------------- clients
class UnaryClient:
    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address, options=UNLIMITED)
        self._unary = self.channel.unary_unary(UNARY)
        self._bytes = self.channel.unary_unary(BYTES)

    async def call(self, payload: Any) -> Any:
        return json.loads(await self._unary(json.dumps(payload).encode()))

    async def echo_bytes(self, data: bytes) -> bytes:
        return await self._bytes(data)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.channel.close()


class BidiClient:
    """One stream; a writer task drains a queue (grpc.aio allows one write at a time); a reader
    task resolves each call's Future by its request id."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address, options=UNLIMITED)
        self.stream = self.channel.stream_stream(BIDI)()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0
        self.outq: asyncio.Queue[bytes] = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._writer()), asyncio.create_task(self._reader())]

    async def _writer(self) -> None:
        get, write = self.outq.get, self.stream.write
        while True:
            await write(await get())

    async def _reader(self) -> None:
        read = self.stream.read
        while True:
            frame = await read()
            if frame is grpc.aio.EOF:
                return
            (rid,) = _ID.unpack_from(frame)
            fut = self.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(frame[8:])

    async def call(self, payload: Any) -> Any:
        self.next_id += 1
        rid = self.next_id
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.outq.put_nowait(_ID.pack(rid) + json.dumps(payload).encode())
        return json.loads(await fut)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.stream.cancel()
        await self.channel.close()
