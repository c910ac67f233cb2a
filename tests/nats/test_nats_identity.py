"""Node ids without broker permissions: a second process claiming the id of a connected, live node
is refused (no takeover), while a restarted node, whose old incarnation is gone, gets in at once."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats import errors as nats_errors

from node_comm import CallContext, ConnectFailedError, DisconnectKind
from node_comm_nats.wire import HELLO, HELLO_ACK, PROBE, decode, encode
from tests.natsd import NatsServer

from .conftest import NodesFactory


async def test_impostor_claiming_a_live_id_is_refused_and_the_live_peer_keeps_working(nodes: NodesFactory) -> None:
    a = await nodes("a", claim_probe_timeout=2.0)
    b = await nodes("b")
    seen: list[str] = []

    async def who(payload: Any, ctx: CallContext) -> str:
        seen.append(ctx.source)
        return f"hi {payload}"

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "b-real"

    a.register("who", who)
    b.register("ping", ping)
    gone: list[Any] = []
    a.on("disconnect", lambda node_id, reason: gone.append(reason))
    await b.connect("a")
    assert await b.call("a", "who", "b") == "hi b"

    impostor = await nodes("b")
    with pytest.raises(ConnectFailedError, match="already connected"):
        await impostor.connect("a", timeout=5.0)

    # The live peer kept its link, both ways, and nothing was disconnected.
    assert await b.call("a", "who", "again") == "hi again"
    assert await a.call("b", "ping", None) == "b-real"
    assert gone == []
    assert "b" in a.peers


async def test_restarted_peer_with_a_dead_old_incarnation_replaces_it_promptly(nodes: NodesFactory) -> None:
    a = await nodes("a", claim_probe_timeout=0.5)
    old = await nodes("b")
    await old.connect("a")
    replaced = asyncio.Event()
    kinds: list[Any] = []

    def on_disconnect(node_id: str, reason: Any) -> None:
        kinds.append(reason.kind)
        replaced.set()

    a.on("disconnect", on_disconnect)
    new = await nodes("b")  # on b's subject before the old one dies: the broker never says "no responders"
    # The old incarnation dies without a goodbye (its broker connection closes): the probe of the
    # new claim goes unanswered.
    await old.transport._nc.close()  # type: ignore[attr-defined]

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "b-new"

    new.register("ping", ping)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await new.connect("a", timeout=5.0)
    assert loop.time() - started < 3.0
    await asyncio.wait_for(replaced.wait(), 5.0)
    assert kinds == [DisconnectKind.REPLACED]
    assert await a.call("b", "ping", None) == "b-new"


async def test_garbage_incarnations_in_a_handshake_are_harmless(nodes: NodesFactory) -> None:
    """A HELLO whose incarnation is not a string (or huge) is read as "none", never crashes the node."""
    from node_comm_nats.transport import _incarnation

    assert _incarnation({"inc": 5}) == ""
    assert _incarnation({"inc": ["x"]}) == ""
    assert len(_incarnation({"inc": "x" * 10_000})) == 64
    a = await nodes("a")
    b = await nodes("b")
    await b.connect("a")
    assert "b" in a.peers


async def test_a_flood_of_claims_and_replayed_probes_leaves_the_live_peer_alone(
    nodes: NodesFactory, nats_server: NatsServer, nats_prefix: str
) -> None:
    """100 concurrent handshakes claiming a live id (fresh incarnations, garbage ones) are all
    refused, at most one probe at a time; probes for a made-up incarnation get no answer."""
    a = await nodes("a", claim_probe_timeout=1.0)
    b = await nodes("b")

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "b-real"

    b.register("ping", ping)
    await b.connect("a")
    nc = await nats.connect(nats_server.url)
    try:
        subject = f"{nats_prefix}.node.a.b"
        hellos = [encode(HELLO, extra={"expect": "a", "inc": f"evil-{i}"}) for i in range(90)]
        hellos += [encode(HELLO, extra={"expect": "a", "inc": [i]}) for i in range(10)]
        replies = await asyncio.gather(*(nc.request(subject, h, timeout=5.0) for h in hellos))
        for reply in replies:
            ack = decode(reply.data)
            assert ack.kind == HELLO_ACK
            assert ack.extra.get("refused")
        # A probe for an incarnation b never had goes unanswered (b answers only for its own).
        with pytest.raises(nats_errors.TimeoutError):
            await nc.request(f"{nats_prefix}.node.b.a", encode(PROBE, extra={"inc": "guess"}), timeout=0.3)
    finally:
        await nc.close()
    assert await a.call("b", "ping", None) == "b-real"
    assert "b" in a.peers
