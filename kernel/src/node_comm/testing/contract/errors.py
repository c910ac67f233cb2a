"""Errors have codes; tracebacks cross the wire only from a node with ``debug=True``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_comm import CallContext, ErrorCode, MethodOptions, NodeCommError, RemoteExecutionError

from .fixtures import ContractFixtures, MakeNode, link


async def _serving(make_node: MakeNode, debug: bool) -> tuple[Any, Any]:
    a = await make_node("a")
    b = await make_node("b", debug=debug)
    await link(a, b)

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "pong"

    async def explode(payload: Any, ctx: CallContext) -> None:
        def deep_helper_function() -> None:
            raise ZeroDivisionError("division by the number of volunteers")

        deep_helper_function()

    async def unencodable(payload: Any, ctx: CallContext) -> Any:
        return {"lock": asyncio.Lock()}

    b.register("ping", ping)
    b.register("explode", explode)
    b.register("unencodable", unencodable)
    b.register("pickled", ping, MethodOptions(serializer="pickle"))
    return a, b


async def _remote_error(coro: Any) -> RemoteExecutionError:
    with pytest.raises(RemoteExecutionError) as info:
        await coro
    assert isinstance(info.value, NodeCommError)
    return info.value


class ErrorsContract(ContractFixtures):
    @pytest.mark.parametrize("debug", [False, True])
    async def test_error_codes(self, make_node: MakeNode, debug: bool) -> None:
        a, _b = await _serving(make_node, debug)

        e = await _remote_error(a.call("b", "no_such_method", {}))
        assert e.code == ErrorCode.METHOD_NOT_FOUND == "METHOD_NOT_FOUND"
        assert "no_such_method" in str(e)
        assert "ping" in str(e)  # the message lists what exists

        e = await _remote_error(a.call("b", "explode", {}))
        assert e.code == "HANDLER_ERROR"
        assert "ZeroDivisionError" in str(e) and "division by the number of volunteers" in str(e)

        e = await _remote_error(a.call("b", "unencodable", {}))
        assert e.code == "SERIALIZATION_ERROR"

        e = await _remote_error(a.call("b", "pickled", {}, serializer="json"))
        assert e.code == "SERIALIZER_MISMATCH"
        assert "pickle" in str(e)

        e = await _remote_error(a.call("b", "ping", {}, serializer="pickle"))
        assert e.code == "SERIALIZER_MISMATCH"

        # Every error above was for that call only.
        assert await a.call("b", "ping", {}) == "pong"
        assert await a.call("b", "pickled", {}, serializer="pickle") == "pong"

    async def test_remote_error_names_target_and_method(self, make_node: MakeNode) -> None:
        a, _ = await _serving(make_node, debug=False)
        e = await _remote_error(a.call("b", "explode", {}))
        assert e.target == "b" and e.method == "explode"

    async def test_no_traceback_without_debug(self, make_node: MakeNode) -> None:
        a, _ = await _serving(make_node, debug=False)
        for method in ("explode", "unencodable"):
            e = await _remote_error(a.call("b", method, {}))
            assert e.remote_traceback is None
            assert e.traceback is None
            assert "Traceback" not in str(e)
            assert "deep_helper_function" not in str(e)

    async def test_traceback_with_debug(self, make_node: MakeNode) -> None:
        a, _ = await _serving(make_node, debug=True)
        e = await _remote_error(a.call("b", "explode", {}))
        assert e.remote_traceback is not None
        assert "deep_helper_function" in e.remote_traceback
        assert "ZeroDivisionError" in e.remote_traceback
        assert "deep_helper_function" in str(e)

    async def test_only_the_serving_nodes_debug_counts(self, make_node: MakeNode) -> None:
        # The caller runs with debug=True, the server without: no traceback.
        a = await make_node("a", debug=True)
        b = await make_node("b", debug=False)
        await link(a, b)

        async def explode(payload: Any, ctx: CallContext) -> None:
            raise KeyError("secret-internal-detail")

        b.register("explode", explode)
        e = await _remote_error(a.call("b", "explode", {}))
        assert e.code == "HANDLER_ERROR"
        assert e.remote_traceback is None

    async def test_handler_exception_type_does_not_leak_as_local_type(self, make_node: MakeNode) -> None:
        a, _ = await _serving(make_node, debug=False)
        with pytest.raises(RemoteExecutionError):
            await a.call("b", "explode", {})
        # A remote ZeroDivisionError is not raised as a local one.
        try:
            await a.call("b", "explode", {})
        except ZeroDivisionError:  # pragma: no cover
            pytest.fail("remote exception type leaked")
        except RemoteExecutionError:
            pass

    async def test_too_many_concurrent_calls_is_resource_exhausted(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b", max_concurrent_calls_per_peer=2)
        await link(a, b)
        inside = 0
        two_in = asyncio.Event()
        release = asyncio.Event()

        async def hold(payload: Any, ctx: CallContext) -> str:
            nonlocal inside
            inside += 1
            if inside == 2:
                two_in.set()
            await release.wait()
            return "done"

        b.register("hold", hold)
        first = [asyncio.create_task(a.call("b", "hold", i)) for i in range(2)]
        await asyncio.wait_for(two_in.wait(), 5)
        e = await _remote_error(a.call("b", "hold", 3))
        assert e.code == "RESOURCE_EXHAUSTED"
        release.set()
        assert await asyncio.gather(*first) == ["done", "done"]
        assert await a.call("b", "hold", 4) == "done"  # room again

    async def test_handler_raising_cancelled_error_answers_at_once(self, pair: Any) -> None:
        """A handler that awaits something cancelled (not being cancelled itself) fails its call with
        a code right away; the caller must not sit out its whole timeout."""
        import sys
        import time

        if sys.version_info < (3, 11):
            pytest.skip("Task.cancelling() is needed to tell the two apart")
        a, b = pair

        async def awaits_cancelled(payload: Any, ctx: CallContext) -> None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.cancel()
            await fut

        b.register("awaits_cancelled", awaits_cancelled)
        t0 = time.monotonic()
        e = await _remote_error(a.call("b", "awaits_cancelled", {}, timeout=10))
        assert time.monotonic() - t0 < 2.0
        assert e.code == "HANDLER_ERROR" and "CancelledError" in str(e)
        assert a.is_connected("b")
