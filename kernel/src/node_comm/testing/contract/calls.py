"""call / notify / broadcast over every transport and serializer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_comm import CallContext, MethodOptions, NodeCommError, RemoteExecutionError

from .fixtures import WAIT, ContractFixtures, MakeNode, link, payload_for


class CallsContract(ContractFixtures):
    async def test_call_returns_handler_result(self, pair: Any, serializer: str) -> None:
        a, b = pair
        seen: list[Any] = []

        async def echo(payload: Any, ctx: CallContext) -> Any:
            seen.append(payload)
            return {"echo": payload, "by": ctx.node.node_id}

        b.register("echo", echo, MethodOptions(serializer=serializer))
        payload = payload_for(serializer)
        result = await a.call("b", "echo", payload, serializer=serializer)
        assert result == {"echo": payload, "by": "b"}
        assert seen == [payload]

    async def test_call_default_serializer_is_json(self, pair: Any) -> None:
        a, b = pair

        async def add(payload: Any, ctx: CallContext) -> int:
            return int(payload["x"] + payload["y"])

        b.register("add", add)
        assert await a.call("b", "add", {"x": 2, "y": 40}) == 42
        # The same method refuses a request in another serializer (the receiver decides).
        with pytest.raises(RemoteExecutionError) as info:
            await a.call("b", "add", {"x": 2, "y": 40}, serializer="msgpack")
        assert info.value.code == "SERIALIZER_MISMATCH"

    async def test_call_none_payload_and_result(self, pair: Any, serializer: str) -> None:
        a, b = pair

        async def nothing(payload: Any, ctx: CallContext) -> None:
            assert payload is None
            return None

        b.register("nothing", nothing, MethodOptions(serializer=serializer))
        assert await a.call("b", "nothing", None, serializer=serializer) is None

    async def test_many_concurrent_calls_match_their_replies(self, pair: Any) -> None:
        a, b = pair

        async def slow_square(payload: Any, ctx: CallContext) -> int:
            # Finish in reverse order so replies arrive out of order.
            await asyncio.sleep(0.001 * (50 - payload))
            return int(payload) ** 2

        b.register("sq", slow_square)
        results = await asyncio.gather(*(a.call("b", "sq", i) for i in range(50)))
        assert results == [i * i for i in range(50)]

    async def test_notify_returns_before_handler_finishes(self, pair: Any, serializer: str) -> None:
        a, b = pair
        started = asyncio.Event()
        release = asyncio.Event()
        finished = asyncio.Event()
        got: list[Any] = []

        async def slow(payload: Any, ctx: CallContext) -> str:
            got.append(payload)
            started.set()
            await release.wait()
            finished.set()
            return "ignored"

        b.register("slow", slow, MethodOptions(serializer=serializer))
        sent = a.notify("b", "slow", payload_for(serializer), serializer=serializer)
        result = await asyncio.wait_for(sent, WAIT)
        assert result is None
        await asyncio.wait_for(started.wait(), WAIT)
        assert not finished.is_set()
        assert got == [payload_for(serializer)]
        release.set()
        await asyncio.wait_for(finished.wait(), WAIT)

    async def test_notify_handler_error_does_not_reach_caller(self, pair: Any) -> None:
        a, b = pair
        ran = asyncio.Event()

        async def boom(payload: Any, ctx: CallContext) -> None:
            ran.set()
            raise RuntimeError("nobody hears this")

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("boom", boom)
        b.register("ping", ping)
        await a.notify("b", "boom", {})
        await asyncio.wait_for(ran.wait(), WAIT)
        assert await a.call("b", "ping") == "pong"

    async def test_notify_unknown_method_is_silent_and_node_keeps_serving(self, pair: Any) -> None:
        a, b = pair

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("ping", ping)
        await a.notify("b", "no_such_method", {"x": 1})
        assert await a.call("b", "ping") == "pong"

    async def test_broadcast_one_failure_never_fails_others(self, make_node: MakeNode, serializer: str) -> None:
        hub = await make_node("hub")
        workers = [await make_node(f"w{i}") for i in range(4)]
        opts = MethodOptions(serializer=serializer)
        for w in workers:
            name = w.node_id

            async def work(payload: Any, ctx: CallContext, _name: str = name) -> Any:
                if _name == "w2":
                    raise ValueError("w2 is broken")
                return {"who": _name, "got": payload}

            w.register("work", work, opts)
            await link(hub, w)

        payload = payload_for(serializer)
        # The signature of the contract has no serializer; json needs none, others pass it by keyword.
        extra: dict[str, Any] = {} if serializer == "json" else {"serializer": serializer}
        results = await hub.broadcast("work", payload, **extra)
        assert set(results) == {"w0", "w1", "w2", "w3"}
        for name in ("w0", "w1", "w3"):
            assert results[name] == {"who": name, "got": payload}
        assert isinstance(results["w2"], RemoteExecutionError)
        assert results["w2"].code == "HANDLER_ERROR"
        assert "w2 is broken" in str(results["w2"])

    async def test_broadcast_runs_concurrently(self, make_node: MakeNode) -> None:
        hub = await make_node("hub")
        n = 3
        arrived = 0
        all_in = asyncio.Event()

        for i in range(n):
            w = await make_node(f"w{i}")

            async def barrier(payload: Any, ctx: CallContext) -> str:
                nonlocal arrived
                arrived += 1
                if arrived == n:
                    all_in.set()
                # Only returns when every worker is inside its handler at the same time.
                await all_in.wait()
                return ctx.node.node_id

            w.register("barrier", barrier)
            await link(hub, w)

        results = await hub.broadcast("barrier", None, timeout=WAIT)
        assert results == {f"w{i}": f"w{i}" for i in range(n)}

    async def test_broadcast_exclude_and_missing_method_and_timeout(self, make_node: MakeNode) -> None:
        hub = await make_node("hub")
        names = ["x", "y", "z", "slow"]
        for name in names:
            node = await make_node(name)
            if name != "y":  # y lacks the method

                async def who(payload: Any, ctx: CallContext) -> str:
                    if ctx.node.node_id == "slow":
                        await asyncio.Event().wait()
                    return ctx.node.node_id

                node.register("who", who)
            await link(hub, node)

        results = await hub.broadcast("who", None, exclude=["z", "hub"], timeout=0.3)
        assert set(results) == {"x", "y", "slow"}
        assert results["x"] == "x"
        assert isinstance(results["y"], RemoteExecutionError) and results["y"].code == "METHOD_NOT_FOUND"
        from node_comm import CallTimeoutError

        assert isinstance(results["slow"], CallTimeoutError)
        assert all(isinstance(r, NodeCommError) for k, r in results.items() if k != "x")
        assert not isinstance(results["y"], CallTimeoutError)

    async def test_broadcast_with_no_peers_is_empty(self, make_node: MakeNode) -> None:
        alone = await make_node("alone")
        assert await alone.broadcast("anything", {}) == {}
