"""Symmetric peers and connect/disconnect events."""

from __future__ import annotations

import asyncio
from typing import Any

from node_comm import CallContext, NodeNotConnectedError

from .fixtures import WAIT, ContractFixtures, MakeNode, link


class PeersContract(ContractFixtures):
    async def test_peers_are_symmetric(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        events: dict[str, list[tuple[str, Any]]] = {"a": [], "b": []}
        a.on("connect", lambda nid, addr: events["a"].append((nid, addr)))
        b.on("connect", lambda nid, addr: events["b"].append((nid, addr)))

        await link(a, b)

        assert a.connected_nodes == ["b"] and b.connected_nodes == ["a"]
        assert a.is_connected("b") and b.is_connected("a")
        assert [nid for nid, _ in events["a"]] == ["b"]
        assert [nid for nid, _ in events["b"]] == ["a"]

        async def whoami(payload: Any, ctx: CallContext) -> dict[str, str]:
            return {"me": ctx.node.node_id, "caller": ctx.source}

        a.register("whoami", whoami)
        b.register("whoami", whoami)
        # b never dialled a, yet calls it over the link a opened.
        assert await b.call("a", "whoami") == {"me": "a", "caller": "b"}
        assert await a.call("b", "whoami") == {"me": "b", "caller": "a"}

        # Connecting again is a no-op: no second link, no second event.
        await link(a, b)
        assert [nid for nid, _ in events["a"]] == ["b"]
        assert [nid for nid, _ in events["b"]] == ["a"]

    async def test_both_directions_interleave_on_one_link(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        await link(a, b)

        async def ping_back(payload: Any, ctx: CallContext) -> Any:
            # A call back to the caller while the caller's call is still pending.
            if payload > 0:
                return await ctx.node.call(ctx.source, "ping_back", payload - 1)
            return ctx.node.node_id

        a.register("ping_back", ping_back)
        b.register("ping_back", ping_back)
        assert await a.call("b", "ping_back", 5) == "a"  # 5 hops: b a b a b -> a answers at 0
        assert await a.call("b", "ping_back", 4) == "b"

    async def test_disconnect_fires_once_on_both_sides(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        gone: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
        b_gone = asyncio.Event()

        def on_b(nid: str, reason: str) -> None:
            gone["b"].append((nid, reason))
            b_gone.set()

        a.on("disconnect", lambda nid, reason: gone["a"].append((nid, reason)))
        b.on("disconnect", on_b)
        await link(a, b)
        await a.disconnect("b")
        await asyncio.wait_for(b_gone.wait(), WAIT)
        assert not a.is_connected("b") and not b.is_connected("a")
        assert [nid for nid, _ in gone["a"]] == ["b"]
        assert [nid for nid, _ in gone["b"]] == ["a"]
        assert all(isinstance(reason, str) and reason for _, reason in gone["a"] + gone["b"])
        # Calls now fail with a clear error naming the node, in both directions.
        for src, dst in ((a, "b"), (b, "a")):
            try:
                await src.call(dst, "anything")
            except NodeNotConnectedError as exc:
                assert exc.node_id == dst
            else:  # pragma: no cover - the assertion is the point
                raise AssertionError("call after disconnect succeeded")
        # Stopping afterwards fires nothing more.
        await a.stop()
        await b.stop()
        assert len(gone["a"]) == 1 and len(gone["b"]) == 1

    async def test_reconnect_after_disconnect(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        connects: list[str] = []
        b_gone = asyncio.Event()
        b.on("connect", lambda nid, addr: connects.append(nid))
        b.on("disconnect", lambda nid, reason: b_gone.set())

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("ping", ping)
        await link(a, b)
        await a.disconnect("b")
        await asyncio.wait_for(b_gone.wait(), WAIT)  # a network transport tells b a moment later
        await link(a, b)
        assert await a.call("b", "ping") == "pong"
        assert connects == ["a", "a"]

    async def test_events_sync_and_async_chainable_and_off(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        c = await make_node("c")
        log: list[str] = []
        async_done = asyncio.Event()

        def sync_connect(nid: str, addr: Any) -> None:
            log.append(f"sync:{nid}")

        async def async_connect(nid: str, addr: Any) -> None:
            await asyncio.sleep(0)
            log.append(f"async:{nid}")
            async_done.set()

        def on_disc(nid: str, reason: str) -> None:
            log.append(f"disc:{nid}")

        returned = a.on("connect", sync_connect).on("connect", async_connect).on("disconnect", on_disc)
        assert returned is a

        await link(a, b)
        await asyncio.wait_for(async_done.wait(), WAIT)
        assert sorted(log) == ["async:b", "sync:b"]

        # off(event, handler) removes only that handler.
        assert a.off("connect", sync_connect) is a
        async_done.clear()
        log.clear()
        await link(a, c)
        await asyncio.wait_for(async_done.wait(), WAIT)
        assert log == ["async:c"]

        # off(event) removes every handler of the event, and no other event's.
        assert a.off("connect") is a
        log.clear()
        c_gone = asyncio.Event()
        c.on("disconnect", lambda nid, reason: c_gone.set())
        await a.disconnect("c")
        await asyncio.wait_for(c_gone.wait(), WAIT)
        await link(a, c)
        assert log == ["disc:c"]

    async def test_failing_event_handler_does_not_break_node(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        ok: list[str] = []

        def bad(nid: str, addr: Any) -> None:
            raise RuntimeError("handler bug")

        async def bad_async(nid: str, addr: Any) -> None:
            raise RuntimeError("async handler bug")

        a.on("connect", bad).on("connect", bad_async).on("connect", lambda nid, addr: ok.append(nid))

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("ping", ping)
        await link(a, b)
        assert ok == ["b"]
        assert await a.call("b", "ping") == "pong"

    async def test_connect_handler_can_call_the_new_peer(self, make_node: MakeNode) -> None:
        """A common pattern: on connect, ask the newcomer who it is (b calls back over a's link)."""
        a = await make_node("a")
        b = await make_node("b")
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def hello(payload: Any, ctx: CallContext) -> dict[str, str]:
            return {"id": ctx.node.node_id, "greeted_by": ctx.source}

        a.register("hello", hello)

        async def on_connect(nid: str, addr: Any) -> None:
            try:
                answered.set_result(await b.call(nid, "hello", {}))
            except Exception as exc:  # pragma: no cover - reported by the assertion below
                answered.set_exception(exc)

        b.on("connect", on_connect)
        await link(a, b)
        assert await asyncio.wait_for(answered, WAIT) == {"id": "a", "greeted_by": "b"}

    async def test_node_restarts_after_stop(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("ping", ping)
        a_lost = asyncio.Event()
        a.on("disconnect", lambda nid, reason: a_lost.set())
        await link(a, b)
        await b.stop()
        await asyncio.wait_for(a_lost.wait(), WAIT)
        assert not a.is_connected("b") and not b.is_running
        await b.start()
        assert b.is_running and b.connected_nodes == []
        await link(a, b)
        assert await a.call("b", "ping") == "pong"
