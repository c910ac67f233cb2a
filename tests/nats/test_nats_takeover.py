"""A second claim of a connected node id: refused while the connected peer answers a probe of its
incarnation (an impostor, or a duplicate id), taken at once when that peer is gone (a restart)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from node_comm import ConnectFailedError
from node_comm_nats.wire import GOODBYE, HELLO, HELLO_ACK, decode, encode
from tests.natsd import NatsServer

from .conftest import NodesFactory
from .test_nats_faults import events


async def echo(payload: Any, ctx: Any) -> Any:
    return payload


async def test_impostor_claiming_a_live_id_is_refused(
    nodes: NodesFactory, nats_server: NatsServer, nats_prefix: str
) -> None:
    a = await nodes("a")
    b = await nodes("b")
    b.register("echo", echo)
    await b.connect("a")
    ups, downs, _, _ = events(a)
    # A raw client speaks as "b" from another incarnation: refused, and the live b is untouched.
    raw = await nats.connect(nats_server.url)
    try:
        for inc in ("0123456789abcdef", None, "not-hex"):
            fields: dict[str, Any] = {"expect": "a"} if inc is None else {"expect": "a", "inc": inc}
            msg = await raw.request(f"{nats_prefix}.node.a.b", encode(HELLO, extra=fields), timeout=5)
            ack = decode(msg.data)
            assert ack.kind == HELLO_ACK and "already connected" in ack.extra["refused"]
        # A goodbye from another incarnation does not drop the link either.
        await raw.publish(f"{nats_prefix}.node.a.b", encode(GOODBYE, extra={"reason": "x", "unlinked": True}))
        await raw.flush()
    finally:
        await raw.close()
    # A whole node with the same id: its connect fails with the reason.
    twin = await nodes("b")
    with pytest.raises(ConnectFailedError, match="already connected"):
        await twin.connect("a", timeout=5)
    for i in range(3):
        assert await a.call("b", "echo", i) == i
    assert b.transport.links == ["a"]  # type: ignore[attr-defined]
    assert a.transport.links == ["b"]  # type: ignore[attr-defined]
    assert (ups, downs) == ([], [])


async def test_garbage_and_floods_of_takeover_probes(
    nodes: NodesFactory, nats_server: NatsServer, nats_prefix: str
) -> None:
    a = await nodes("a")
    b = await nodes("b")
    b.register("echo", echo)
    await b.connect("a")
    inc = a.transport._inc  # type: ignore[attr-defined]
    raw = await nats.connect(nats_server.url)
    try:
        for data in (b"", b"\xff" * 70, encode(HELLO, extra={"expect": "a"}) * 3):
            await raw.publish(f"{nats_prefix}.node.a.b.{inc}", data)  # no reply subject: ignored
        answered = await raw.request(f"{nats_prefix}.node.a.x.{inc}", b"garbage", timeout=5)
        assert answered.data  # a probe is answered whatever it carries; nothing else is read
        await asyncio.gather(
            *(raw.publish(f"{nats_prefix}.node.a.b.{inc}", b"?", reply="_INBOX.x") for _ in range(500))
        )
        # Concurrent claims while one is being checked are refused at once.
        hellos = [
            raw.request(f"{nats_prefix}.node.a.b", encode(HELLO, extra={"expect": "a", "inc": f"{i:016x}"}), timeout=5)
            for i in range(5)
        ]
        acks = [decode(m.data) for m in await asyncio.gather(*hellos)]
        assert all("already connected" in ack.extra["refused"] for ack in acks)
    finally:
        await raw.close()
    assert await a.call("b", "echo", "still") == "still"


async def test_restarted_peer_replaces_its_dead_link_at_once(nodes: NodesFactory) -> None:
    # Presence probes are slow here, so only the takeover check can notice the old b is gone.
    a = await nodes("a", presence_interval=60, takeover_probe_timeout=5)
    old = await nodes("b")
    await old.connect("a")
    _, downs, _, _ = events(a)
    reasons: list[str] = []
    a.on("disconnect", lambda n, reason: reasons.append(reason))
    nc = old.transport.client  # type: ignore[attr-defined]
    await nc.close()  # gone without a goodbye, as a killed process
    new = await nodes("b")
    new.register("echo", echo)
    t0 = time.monotonic()
    await new.connect("a", timeout=10)
    assert time.monotonic() - t0 < 2.5  # the broker said "no responders" at once: no probe timeout
    assert downs == ["b"] and "did not answer a probe" in reasons[0]
    assert await a.call("b", "echo", "new") == "new"


async def test_restarted_peer_process_gets_in(spawn: Any, nodes: NodesFactory, nats_server: NatsServer) -> None:
    a = await nodes("a", presence_interval=60)
    ups, downs, up, _ = events(a)
    first = await spawn(nats_server.url, "b", connect="a")
    await asyncio.wait_for(up.wait(), 10)
    await first.kill()  # no goodbye
    up.clear()
    await spawn(nats_server.url, "b", connect="a")  # READY: its connect to a succeeded
    await asyncio.wait_for(up.wait(), 10)
    assert downs == ["b"] and ups == ["b", "b"]
    assert await a.call("b", "echo", "back") == "back"
