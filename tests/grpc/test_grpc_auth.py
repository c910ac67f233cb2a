"""The ``auth`` interceptor over real gRPC loopback: no token in anything sent; a captured call
resent on the same link is refused."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import pytest
from conftest import grpc_config

from node_comm import (
    CallContext,
    ErrorCode,
    Interceptor,
    InterceptorConfig,
    Message,
    MessageType,
    NodeCommError,
    RemoteExecutionError,
)
from node_comm_interceptors.auth import _KEY_LABEL

TOKEN = "grpc-tok-5b2d-must-never-be-sent"


class Recorder(Interceptor):
    """Keeps a copy of each message as it leaves (after auth signed it) or arrives (before auth)."""

    def __init__(self) -> None:
        self.out: list[Message] = []
        self.inbound: list[Message] = []
        self.errors: list[str] = []
        self.seen = asyncio.Event()

    async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        self.out.append(message.copy())
        reply = await next_handler(message)
        if reply is not None:
            self.inbound.append(reply.copy())
        return reply

    async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        self.inbound.append(message.copy())
        try:
            reply = await next_handler(message)
        except NodeCommError as exc:
            self.errors.append(str(exc.code))
            raise
        finally:
            self.seen.set()
        if reply is not None:
            self.out.append(reply.copy())
        return reply


def wire_text(messages: list[Message]) -> bytes:
    return b"".join(repr(m.metadata).encode() + bytes(m.payload) + m.method.encode() for m in messages)


async def test_token_never_sent_and_replay_refused_over_grpc(nodes) -> None:
    auth = InterceptorConfig("auth", {"token": TOKEN, "sign_payload": True})
    server = await nodes("server", grpc_config("server", interceptors=[auth]))
    client = await nodes("client", grpc_config("client", port=None, interceptors=[auth]))
    # On the server, first in the chain: sees what came off the wire before auth consumed it. On the
    # client, after auth: sees what auth handed to the transport.
    on_server, on_client = Recorder(), Recorder()
    server.interceptors._items.insert(0, on_server)
    client.interceptors.add(on_client)
    runs: list[Any] = []

    async def echo(payload: Any, ctx: CallContext) -> Any:
        runs.append(payload)
        return payload

    server.register("echo", echo)
    client.register("echo", echo)
    await client.connect("server", server.address)
    assert await client.call("server", "echo", "hello") == "hello"
    assert await server.call("client", "echo", "back") == "back"  # the server signs on the client's link
    await client.notify("server", "echo", "note")
    on_server.seen.clear()
    while len(runs) < 3:
        await asyncio.wait_for(on_server.seen.wait(), 5)
        on_server.seen.clear()
    everything = on_server.inbound + on_server.out + on_client.out + on_client.inbound
    assert len(everything) >= 6
    assert TOKEN.encode() not in wire_text(everything)
    signed = [m for m in on_server.inbound if m.type in (MessageType.REQUEST, MessageType.NOTIFY)]
    assert signed and all(m.metadata["authorization"].startswith("nc1.") for m in signed)

    # Replay: the exact request as it was sent, on the same link.
    captured = next(m for m in on_client.out if m.type is MessageType.REQUEST and m.method == "echo")
    before = len(runs)
    on_server.seen.clear()
    await client.transport.send(captured.copy())
    await asyncio.wait_for(on_server.seen.wait(), 5)
    assert on_server.errors[-1] == ErrorCode.UNAUTHENTICATED
    assert len(runs) == before
    assert await client.call("server", "echo", "still served") == "still served"


async def test_wrong_token_over_grpc_is_refused_and_named(nodes) -> None:
    server = await nodes("server", grpc_config("server", interceptors=[InterceptorConfig("auth", {"token": TOKEN})]))
    bad = await nodes("bad", grpc_config("bad", port=None, interceptors=[InterceptorConfig("auth", {"token": "x"})]))
    server.register("echo", lambda p, ctx: p)
    await bad.connect("server", server.address)
    with pytest.raises(RemoteExecutionError) as info:
        await bad.call("server", "echo", 1)
    assert info.value.code is ErrorCode.UNAUTHENTICATED and "another token" in str(info.value)


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``upstream`` and keeps every byte, both ways."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.seen = bytearray()
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.seen += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        for pipe in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            task = asyncio.ensure_future(pipe)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()


async def test_token_bytes_never_cross_the_socket(nodes) -> None:
    auth = InterceptorConfig("auth", {"token": TOKEN, "sign_payload": True})
    server = await nodes("server", grpc_config("server", interceptors=[auth]))
    client = await nodes("client", grpc_config("client", port=None, interceptors=[auth]))
    server.register("echo", lambda p, ctx: p)
    proxy = RecordingProxy(server.address)
    try:
        await client.connect("server", await proxy.start())
        marker = "payload-marker-31337"
        assert await client.call("server", "echo", marker) == marker
        await client.notify("server", "echo", marker)
        assert await client.call("server", "echo", marker) == marker
        assert marker.encode() in proxy.seen  # control: the proxy sees the plaintext stream
        assert b"nc1." in proxy.seen  # and the signatures in it
        assert TOKEN.encode() not in proxy.seen
        derived = hmac.digest(TOKEN.encode(), _KEY_LABEL, "sha256")
        assert derived not in proxy.seen and derived.hex().encode() not in proxy.seen
    finally:
        await client.stop()
        await proxy.close()
