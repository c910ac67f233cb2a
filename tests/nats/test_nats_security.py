"""The broker as the root of trust: per-user subject permissions bind each NATS user to one node id,
so a participant cannot speak as another; TLS to the server is checked in test_nats_config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from node_comm import CallContext, MethodOptions, Node
from tests.natsd import NatsServer

from .conftest import nats_config

P = "sec"


def user(name: str) -> str:
    """A NATS user that may publish only as node ``name`` and read only what is sent to it."""
    return (
        f'{{user: {name}, password: "pw-{name}", permissions: {{'
        f'publish: {{allow: ["{P}.node.*.{name}", "{P}.node.*.{name}.*", "{P}.bcast.{name}.*", '
        f'"{P}.xfer.{name}.*"]}}, '
        f'subscribe: {{allow: ["{P}.node.{name}.*", "{P}.node.{name}.*.*", "{P}.bcast.*.*", "{P}.xfer.*.*", '
        '"_INBOX.>"]}, '
        "allow_responses: true}}"
    )


@pytest.fixture
def locked_server() -> Iterator[NatsServer]:
    server = NatsServer(
        extra_conf=f"authorization {{ users = [{user('a')}, {user('b')}, {user('c')}, {user('mallory')}] }}"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_permissions_stop_a_participant_from_impersonating_another(locked_server: NatsServer) -> None:
    def cfg(node_id: str) -> Any:
        return nats_config(
            node_id,
            locked_server.url,
            P,
            user=node_id,
            password=f"pw-{node_id}",
            broker_enforces_identity=True,
            chunk_size=256 * 1024,
        )

    calls: list[str] = []

    async def transfer(payload: Any, ctx: CallContext) -> str:
        calls.append(ctx.source)
        return "done"

    async def size(payload: bytes, ctx: CallContext) -> bytes:
        return str(len(payload)).encode()

    async with Node("a", cfg("a")) as a, Node("b", cfg("b")) as b, Node("c", cfg("c")) as c:
        b.register("transfer", transfer)
        await a.connect("b")
        assert await a.call("b", "transfer", 1) == "done"
        assert b.transport.peer_identity("a") == "nats:a"  # type: ignore[attr-defined]
        # The documented permissions are enough for everything, a chunked broadcast included.
        for node in (b, c):
            node.register("size", size, MethodOptions(serializer="raw"))
        await a.connect("c")
        big = await a.broadcast("size", b"x" * (3 * 1024 * 1024), serializer="raw", timeout=10)
        assert big == {"b": b"3145728", "c": b"3145728"}

        # mallory, logged in as herself, claims to be "a" on the wire: the broker refuses it.
        refused = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            if "permissions violation" in str(exc).lower():
                refused.set()

        evil = await nats.connect(locked_server.url, user="mallory", password="pw-mallory", error_cb=on_error)
        try:
            from node_comm_nats.wire import encode

            await evil.publish(f"{P}.node.b.a", encode(1, id=99, method="transfer", serializer="json", payload=b"2"))
            await evil.flush()
            await asyncio.wait_for(refused.wait(), 5)
        finally:
            await evil.close()
        assert calls == ["a"]  # only a's own call reached b
