"""Payloads are always serialized, in memory mode too; sync handlers run off the event loop; the
context tells a handler who called it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from node_comm import CallContext, Interceptor, Message, MethodOptions, SerializationError

from .fixtures import WAIT, ContractFixtures, MakeNode, link

UNENCODABLE: dict[str, Callable[[], Any]] = {
    "json": lambda: {"x": object()},
    "msgpack": lambda: {"x": object()},
    "pickle": lambda: {"x": threading.Lock()},
    "numpy": lambda: {"x": object()},
}


class PayloadsContract(ContractFixtures):
    async def test_unencodable_payload_fails_at_caller_and_nothing_runs(self, pair: Any, serializer: str) -> None:
        a, b = pair
        runs = 0

        async def count(payload: Any, ctx: CallContext) -> int:
            nonlocal runs
            runs += 1
            return runs

        b.register("count", count, MethodOptions(serializer=serializer))
        with pytest.raises(SerializationError) as info:
            await a.call("b", "count", UNENCODABLE[serializer](), serializer=serializer)
        assert serializer in str(info.value)
        with pytest.raises(SerializationError):
            await a.notify("b", "count", UNENCODABLE[serializer](), serializer=serializer)
        assert runs == 0
        # Nothing was sent, the link is fine.
        assert await a.call("b", "count", {"ok": 1}, serializer=serializer) == 1
        assert runs == 1

    async def test_handler_mutating_payload_never_touches_callers_object(self, pair: Any, serializer: str) -> None:
        a, b = pair
        kept: list[Any] = []

        async def mutate(payload: Any, ctx: CallContext) -> Any:
            payload["items"].append("added by handler")
            payload["new"] = True
            kept.append(payload)
            return payload

        b.register("mutate", mutate, MethodOptions(serializer=serializer))
        mine = {"items": [1, 2]}
        result = await a.call("b", "mutate", mine, serializer=serializer)
        assert mine == {"items": [1, 2]}
        assert result == {"items": [1, 2, "added by handler"], "new": True}
        # The result is a copy too: changing it does not change what the handler kept.
        result["items"].clear()
        assert kept[0]["items"] == [1, 2, "added by handler"]
        assert result is not kept[0]

    async def test_payload_goes_on_the_wire_as_bytes(self, pair: Any, serializer: str) -> None:
        a, b = pair
        seen: list[Message] = []

        class Spy(Interceptor):
            async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
                seen.append(message)
                return await next_handler(message)

        b.interceptors.add(Spy())

        async def echo(payload: Any, ctx: CallContext) -> Any:
            return payload

        b.register("echo", echo, MethodOptions(serializer=serializer))
        await a.call("b", "echo", {"k": "v"}, serializer=serializer)
        assert len(seen) == 1
        assert isinstance(seen[0].payload, bytes) and seen[0].payload
        assert seen[0].serializer == serializer

    async def test_sync_handler_runs_off_the_event_loop(self, pair: Any) -> None:
        a, b = pair
        loop_thread = threading.current_thread()
        in_handler = threading.Event()
        release = threading.Event()
        threads: list[threading.Thread] = []

        def blocking(payload: Any, ctx: CallContext) -> dict[str, Any]:
            threads.append(threading.current_thread())
            in_handler.set()
            # Blocks its thread; if this ran on the event loop, nothing else could run.
            assert release.wait(WAIT)
            return {"sum": sum(payload), "source": ctx.source}

        async def ping(payload: Any, ctx: CallContext) -> str:
            return "pong"

        b.register("blocking", blocking)
        b.register("ping", ping)
        task = asyncio.create_task(a.call("b", "blocking", [1, 2, 3]))
        await asyncio.wait_for(asyncio.to_thread(in_handler.wait, WAIT), WAIT)
        # The loop keeps serving other calls while the plain handler blocks.
        assert await asyncio.wait_for(a.call("b", "ping"), WAIT) == "pong"
        assert not task.done()
        release.set()
        assert await asyncio.wait_for(task, WAIT) == {"sum": 6, "source": "a"}
        assert threads and threads[0] is not loop_thread
        assert threads[0] is not threading.main_thread()

    async def test_sync_handler_errors_have_codes(self, pair: Any) -> None:
        a, b = pair

        def bad(payload: Any, ctx: CallContext) -> None:
            raise ValueError("sync failure")

        b.register("bad", bad)
        from node_comm import RemoteExecutionError

        with pytest.raises(RemoteExecutionError) as info:
            await a.call("b", "bad", {})
        assert info.value.code == "HANDLER_ERROR" and "sync failure" in str(info.value)

    async def test_context_source_node_metadata(self, make_node: MakeNode) -> None:
        a = await make_node("alice")
        b = await make_node("bob")
        await link(a, b)
        seen: list[CallContext] = []
        three = asyncio.Event()

        class Tag(Interceptor):
            async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
                message.metadata["trace-id"] = "t-123"
                return await next_handler(message)

        async def look(payload: Any, ctx: CallContext) -> None:
            seen.append(ctx)
            if len(seen) == 3:
                three.set()

        def look_sync(payload: Any, ctx: CallContext) -> None:
            seen.append(ctx)

        b.register("look", look)
        b.register("look_sync", look_sync)
        await a.call("bob", "look", {}, metadata={"user": "u1"})
        a.interceptors.add(Tag())
        await a.call("bob", "look_sync", {})
        await a.notify("bob", "look", {})

        await asyncio.wait_for(three.wait(), WAIT)
        for ctx in seen:
            assert ctx.source == "alice"
            assert ctx.node is b
            assert ctx.method in ("look", "look_sync")
        assert seen[0].metadata.get("user") == "u1"
        assert seen[1].metadata.get("trace-id") == "t-123"
        assert seen[2].metadata.get("trace-id") == "t-123"

    async def test_pickle_carries_arbitrary_objects(self, pair: Any) -> None:
        a, b = pair
        import datetime
        import fractions

        async def inspect_types(payload: Any, ctx: CallContext) -> Any:
            return {k: type(v).__name__ for k, v in payload.items()} | {"echo": payload}

        b.register("types", inspect_types, MethodOptions(serializer="pickle"))
        data = {
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "frac": fractions.Fraction(1, 3),
            "set": {1, 2},
            "tuple": (1, "a"),
            "bytes": b"\x00\xff",
        }
        result = await a.call("b", "types", data, serializer="pickle")
        assert result["echo"] == data
        assert result["set"] == "set" and result["tuple"] == "tuple" and result["frac"] == "Fraction"

    async def test_msgpack_bytes_stay_bytes(self, pair: Any) -> None:
        a, b = pair
        blob = bytes(range(256)) * 1024

        async def size(payload: Any, ctx: CallContext) -> Any:
            assert isinstance(payload["w"], bytes)
            return {"n": len(payload["w"]), "back": payload["w"][:16]}

        b.register("size", size, MethodOptions(serializer="msgpack"))
        result = await a.call("b", "size", {"w": blob}, serializer="msgpack")
        assert result == {"n": len(blob), "back": blob[:16]}

    async def test_large_payload_round_trips(self, pair: Any) -> None:
        a, b = pair
        blob = b"\x5a" * (8 * 1024 * 1024)  # bigger than gRPC's default 4 MiB

        async def echo(payload: Any, ctx: CallContext) -> Any:
            return payload

        b.register("echo", echo, MethodOptions(serializer="msgpack"))
        assert await asyncio.wait_for(a.call("b", "echo", blob, serializer="msgpack"), 20) == blob

    async def test_receiver_never_shares_the_senders_message(self, pair: Any) -> None:
        """What a receiving interceptor does to a message (decrypt, rewrite) never shows in the
        sender's message, as over a network; memory mode must not hand over the same object."""
        a, b = pair
        sent: list[tuple[bytes, str, str]] = []

        class Rewrite(Interceptor):
            async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
                message.payload = b'"rewritten"'
                message.serializer = "json"
                message.metadata["seen"] = "yes"
                return await next_handler(message)

        class Watch(Interceptor):
            async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
                before = (message.payload, message.serializer, dict(message.metadata))
                reply = await next_handler(message)
                sent.append((message.payload, message.serializer, repr(message.metadata)))
                assert (message.payload, message.serializer, dict(message.metadata)) == before
                return reply

        async def echo(payload: Any, ctx: CallContext) -> Any:
            return payload

        b.register("echo", echo)
        b.interceptors.add(Rewrite())
        a.interceptors.add(Watch())
        assert await a.call("b", "echo", "original") == "rewritten"
        assert sent == [(b'"original"', "json", "{}")]
