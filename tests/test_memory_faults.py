"""Fault injection of the memory transport (``node.transport``): latency, a dropped link, a frozen
node; so timeouts and loss paths can be tested without sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node_comm import (
    CallContext,
    CallTimeoutError,
    DisconnectKind,
    HeartbeatConfig,
    Node,
    NodeCommError,
    NodeConfig,
    NodeNotConnectedError,
    TransportConfig,
    config_from_dict,
)
from node_comm.exceptions import ConnectFailedError, ConnectionLostError

WAIT = 5.0


def mem(node_id: str, **kw: Any) -> NodeConfig:
    kw.setdefault("shutdown_grace", 0.0)
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="memory"), **kw)


class Served:
    """Handlers for the tests: ``ping``, ``hang`` (until cancelled), ``record`` (notify log)."""

    def __init__(self) -> None:
        self.hanging = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.records: list[Any] = []
        self.recorded = asyncio.Event()

    def install(self, node: Node) -> None:
        async def ping(payload: Any, ctx: CallContext) -> str:
            return f"pong from {ctx.node.node_id}"

        async def hang(payload: Any, ctx: CallContext) -> None:
            self.hanging.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise

        async def record(payload: Any, ctx: CallContext) -> None:
            self.records.append(payload)
            self.recorded.set()

        node.register("ping", ping)
        node.register("hang", hang)
        node.register("record", record)


@pytest.fixture
async def ab() -> AsyncIterator[tuple[Node, Node, Served, Served]]:
    a, b = Node("a", mem("a")), Node("b", mem("b"))
    sa, sb = Served(), Served()
    sa.install(a)
    sb.install(b)
    async with a, b:
        await a.connect("b")
        yield a, b, sa, sb


def disconnect_log(node: Node) -> tuple[list[tuple[str, str]], asyncio.Event]:
    log: list[tuple[str, str]] = []
    fired = asyncio.Event()

    def on(nid: str, reason: str) -> None:
        log.append((nid, reason))
        fired.set()

    node.on("disconnect", on)
    return log, fired


# --------------------------------------------------------------------------- latency


async def test_latency_makes_a_short_timeout_expire(ab: tuple[Node, Node, Served, Served]) -> None:
    a, _b, _, _ = ab
    a.transport.set_latency(0.3)  # type: ignore[attr-defined]
    with pytest.raises(CallTimeoutError) as info:
        await a.call("b", "ping", timeout=0.1)
    assert (info.value.target, info.value.method) == ("b", "ping")
    # With room for the latency the same call succeeds, and takes at least the latency.
    t0 = time.monotonic()
    assert await a.call("b", "ping", timeout=WAIT) == "pong from b"
    assert time.monotonic() - t0 >= 0.29
    a.transport.set_latency(0.0)  # type: ignore[attr-defined]
    t0 = time.monotonic()
    assert await a.call("b", "ping") == "pong from b"
    assert time.monotonic() - t0 < 0.2


async def test_latency_per_peer() -> None:
    a, b, c = Node("a", mem("a")), Node("b", mem("b")), Node("c", mem("c"))
    for n in (b, c):
        Served().install(n)
    async with a, b, c:
        await a.connect("b")
        await a.connect("c")
        a.transport.set_latency(0.5, peer="b")  # type: ignore[attr-defined]
        with pytest.raises(CallTimeoutError):
            await a.call("b", "ping", timeout=0.1)
        assert await a.call("c", "ping", timeout=0.1) == "pong from c"


async def test_latency_from_config() -> None:
    config = config_from_dict({"node_id": "slow", "transport": {"mode": "memory", "memory": {"latency": 0.3}}})
    slow, fast = Node("slow", config), Node("fast", mem("fast"))
    Served().install(fast)
    async with slow, fast:
        await slow.connect("fast")
        with pytest.raises(CallTimeoutError):
            await slow.call("fast", "ping", timeout=0.1)


async def test_latency_keeps_order_and_late_replies_are_dropped(
    ab: tuple[Node, Node, Served, Served],
) -> None:
    a, _, _, sb = ab
    a.transport.set_latency(0.05)  # type: ignore[attr-defined]
    for i in range(5):
        await a.notify("b", "record", i)
    # A call with a timeout shorter than the latency: its reply arrives late and is ignored.
    with pytest.raises(CallTimeoutError):
        await a.call("b", "ping", timeout=0.01)
    assert await a.call("b", "ping", timeout=WAIT) == "pong from b"
    assert sb.records == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- dropped link


async def test_drop_link_fails_pending_calls_on_both_sides(ab: tuple[Node, Node, Served, Served]) -> None:
    a, b, sa, sb = ab
    a_log, a_fired = disconnect_log(a)
    b_log, b_fired = disconnect_log(b)
    a_to_b = asyncio.create_task(a.call("b", "hang", timeout=30))
    b_to_a = asyncio.create_task(b.call("a", "hang", timeout=30))
    await asyncio.wait_for(asyncio.gather(sa.hanging.wait(), sb.hanging.wait()), WAIT)

    t0 = time.monotonic()
    a.transport.drop_link("b")  # type: ignore[attr-defined]
    for task, peer in ((a_to_b, "b"), (b_to_a, "a")):
        with pytest.raises(ConnectionLostError) as info:
            await asyncio.wait_for(task, WAIT)
        assert info.value.node_id == peer
        assert not isinstance(info.value, CallTimeoutError)
        assert "dropped" in str(info.value)
    assert time.monotonic() - t0 < 0.5
    await asyncio.wait_for(asyncio.gather(a_fired.wait(), b_fired.wait()), WAIT)
    # The handlers serving the lost link are cancelled on both sides.
    await asyncio.wait_for(asyncio.gather(sa.cancelled.wait(), sb.cancelled.wait()), WAIT)
    assert not a.is_connected("b") and not b.is_connected("a")
    with pytest.raises(NodeNotConnectedError):
        await a.call("b", "ping")
    await a.stop()
    await b.stop()
    assert [n for n, _ in a_log] == ["b"] and [n for n, _ in b_log] == ["a"]


async def test_reconnect_after_drop(ab: tuple[Node, Node, Served, Served]) -> None:
    a, b, _, _ = ab
    b.transport.drop_link("a")  # type: ignore[attr-defined]
    assert not a.is_connected("b")
    await a.connect("b")
    assert await a.call("b", "ping") == "pong from b"
    assert await b.call("a", "ping") == "pong from a"


# --------------------------------------------------------------------------- frozen node


async def test_frozen_peer_is_disconnected_by_heartbeat() -> None:
    interval, timeout = 0.05, 0.2
    a = Node("a", mem("a", heartbeat=HeartbeatConfig(enabled=True, interval=interval, timeout=timeout)))
    b = Node("b", mem("b"))
    sb = Served()
    sb.install(b)
    a_log, a_fired = disconnect_log(a)
    async with a, b:
        await a.connect("b")
        pending = asyncio.create_task(a.call("b", "hang", timeout=30))
        await asyncio.wait_for(sb.hanging.wait(), WAIT)
        b.transport.freeze()  # type: ignore[attr-defined]
        t0 = time.monotonic()
        await asyncio.wait_for(a_fired.wait(), WAIT)
        assert time.monotonic() - t0 <= interval + timeout + 0.3
        with pytest.raises(NodeCommError) as info:
            await asyncio.wait_for(pending, WAIT)
        assert isinstance(info.value, ConnectionLostError)
        assert not isinstance(info.value, CallTimeoutError)
        assert "heartbeat" in a_log[0][1]
        assert a_log[0][1].kind is DisconnectKind.HEARTBEAT  # type: ignore[attr-defined]
        b.transport.thaw()  # type: ignore[attr-defined]
    assert len(a_log) == 1


async def test_heartbeats_keep_unfrozen_peer_connected() -> None:
    # Durations wide enough that a loaded CI machine's scheduling stalls stay well under the timeout.
    hb = HeartbeatConfig(enabled=True, interval=0.05, timeout=0.6)
    a, b = Node("a", mem("a", heartbeat=hb)), Node("b", mem("b", heartbeat=hb))
    Served().install(b)
    a_log, _ = disconnect_log(a)
    async with a, b:
        await a.connect("b")
        # Frozen for less than the timeout: held messages arrive on thaw, nobody is dropped.
        b.transport.freeze()  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)  # a duration under test (a third of the timeout), not synchronisation
        b.transport.thaw()  # type: ignore[attr-defined]
        await asyncio.sleep(1.3)  # > 2 timeouts of healthy heartbeats
        assert a.is_connected("b") and a_log == []
        assert await a.call("b", "ping") == "pong from b"


async def test_thaw_delivers_held_messages_in_order(ab: tuple[Node, Node, Served, Served]) -> None:
    a, b, _, sb = ab
    b.transport.freeze()  # type: ignore[attr-defined]
    assert b.transport.frozen  # type: ignore[attr-defined]
    for i in range(5):
        await a.notify("b", "record", i)
    call = asyncio.create_task(a.call("b", "ping", timeout=WAIT))
    # Give the loop many turns: nothing may get through while frozen.
    for _ in range(20):
        await asyncio.sleep(0)
    assert sb.records == [] and not call.done()
    b.transport.thaw()  # type: ignore[attr-defined]
    assert await asyncio.wait_for(call, WAIT) == "pong from b"
    assert sb.records == [0, 1, 2, 3, 4]


async def test_frozen_node_holds_what_it_sends(ab: tuple[Node, Node, Served, Served]) -> None:
    _a, b, sa, _ = ab
    b.transport.freeze()  # type: ignore[attr-defined]
    await b.notify("a", "record", "from frozen b")
    for _ in range(20):
        await asyncio.sleep(0)
    assert sa.records == []
    b.transport.thaw()  # type: ignore[attr-defined]
    await asyncio.wait_for(sa.recorded.wait(), WAIT)
    assert sa.records == ["from frozen b"]


async def test_call_to_frozen_peer_times_out_and_cancel_arrives_on_thaw(
    ab: tuple[Node, Node, Served, Served],
) -> None:
    a, b, _, sb = ab
    b.transport.freeze()  # type: ignore[attr-defined]
    with pytest.raises(CallTimeoutError):
        await a.call("b", "hang", timeout=0.1)
    assert not sb.hanging.is_set()
    b.transport.thaw()  # type: ignore[attr-defined]
    # The request and the cancel were both held; after thaw the handler must not linger.
    if sb.hanging.is_set():
        await asyncio.wait_for(sb.cancelled.wait(), WAIT)
    assert await a.call("b", "ping") == "pong from b"


async def test_connect_to_frozen_node_fails_within_timeout() -> None:
    a, b = Node("a", mem("a")), Node("b", mem("b"))
    async with a, b:
        b.transport.freeze()  # type: ignore[attr-defined]
        t0 = time.monotonic()
        with pytest.raises(ConnectFailedError) as info:
            await a.connect("b", timeout=0.1)
        assert time.monotonic() - t0 < 1.0
        assert info.value.node_id == "b"
        assert not a.is_connected("b")


async def test_messages_in_flight_on_a_dropped_link_never_arrive_on_a_new_one(
    ab: tuple[Node, Node, Served, Served],
) -> None:
    """As with a real connection: what was in flight when a link dropped is lost with it, even if
    the nodes reconnect before it would have arrived (a failed call must not run later)."""
    a, _b, _, sb = ab
    a.transport.set_latency(0.2)  # type: ignore[attr-defined]
    lost_call = asyncio.create_task(a.call("b", "record", "lost call", timeout=5))
    await a.notify("b", "record", "lost notify")
    await asyncio.sleep(0)  # the request is now in flight
    a.transport.drop_link("b")  # type: ignore[attr-defined]
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(lost_call, WAIT)
    a.transport.set_latency(0.0)  # type: ignore[attr-defined]
    await a.connect("b")
    await asyncio.sleep(0.3)  # past the moment the lost messages would have arrived
    await a.notify("b", "record", "after reconnect")
    await asyncio.wait_for(sb.recorded.wait(), WAIT)
    assert await a.call("b", "ping") == "pong from b"
    assert sb.records == ["after reconnect"]
