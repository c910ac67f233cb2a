"""Log lines a peer can cause are rate-limited, and what a peer supplied cannot forge a line."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from node_comm import (
    CallContext,
    InterceptorConfig,
    Message,
    MessageType,
    Node,
    peer_logging,
)
from node_comm.peer_logging import RateLimitedLog, token
from tests.interceptor_helpers import mem

EVIL = "evil\nFORGED 2026-01-01 CRITICAL node_comm: root password is hunter2"


class Clock:
    """Stands in for ``time.monotonic`` in peer_logging: the test moves time, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(peer_logging.time, "monotonic", c)
    return c


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def assert_unforged(messages: list[str]) -> None:
    for m in messages:
        assert "\n" not in m and "\r" not in m, m


def test_one_key_is_bounded_and_reports_what_it_suppressed(clock: Clock, caplog) -> None:
    caplog.set_level(logging.INFO, logger="t.flood")
    rlog = RateLimitedLog(logging.getLogger("t.flood"), rate=1.0, burst=5)
    for i in range(10_000):
        rlog.warning("peer-x", "bad frame %d", i)
    assert lines(caplog, "t.flood") == [f"bad frame {i}" for i in range(5)]
    clock.now += 2.0  # two more tokens
    rlog.warning("peer-x", "bad frame %d", 10_000)
    rlog.warning("peer-x", "bad frame %d", 10_001)
    rlog.warning("peer-x", "bad frame %d", 10_002)
    assert lines(caplog, "t.flood")[5:] == [
        "bad frame 10000 (9995 similar lines suppressed)",
        "bad frame 10001",
    ]


def test_many_keys_are_bounded_together(clock: Clock, caplog) -> None:
    caplog.set_level(logging.INFO, logger="t.keys")
    rlog = RateLimitedLog(logging.getLogger("t.keys"), burst=10, total_burst=50, max_keys=100)
    for i in range(10_000):
        rlog.warning(f"peer-{i}", "unknown frame from %r", f"peer-{i}")
    assert len(lines(caplog, "t.keys")) == 50
    assert len(rlog._buckets) <= 100  # the limiter's own memory is bounded


def test_disabled_levels_cost_no_token(clock: Clock, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="t.level")
    rlog = RateLimitedLog(logging.getLogger("t.level"), burst=1)
    for _ in range(100):
        rlog.debug("k", "noise")
    rlog.warning("k", "signal")
    assert lines(caplog, "t.level") == ["signal"]


def test_token_leaves_plain_words_bare_and_quotes_the_rest() -> None:
    assert token("store") == "store"
    assert token("node-7") == "node-7"
    assert token(EVIL) == repr(EVIL)
    assert token("a outcome=ok") == "'a outcome=ok'"
    assert token("") == "''"


async def test_a_flood_of_failing_notifies_logs_a_bounded_number_of_unforged_lines(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="node_comm.node")
    a, b = Node("a", mem("a")), Node("b", mem("b"))

    async def boom(payload: Any, ctx: CallContext) -> None:
        raise RuntimeError(f"failed on {payload}")

    b.register("boom", boom)
    b.register("ping", lambda p, ctx: "pong")
    async with a, b:
        await a.connect("b")
        for i in range(300):
            await a.notify("b", EVIL, i)  # unknown method, with a newline in its name
            await a.notify("b", "boom", EVIL)  # handler fails with a newline in its error
        # Served in order: every notify has been handled once a later call is answered.
        assert await a.call("b", "ping", None) == "pong"
    logged = lines(caplog, "node_comm.node")
    notify_lines = [m for m in logged if "notify" in m]
    assert 0 < len(notify_lines) <= 10, notify_lines  # default burst of one key, of 600 failures
    assert any(repr(EVIL) in m for m in notify_lines)
    assert_unforged(logged)
    assert len(logged) <= 100  # every key of the node together


async def test_unknown_message_types_from_a_peer_are_bounded(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="node_comm.node")
    a, b = Node("a", mem("a")), Node("b", mem("b"))
    async with a, b:
        await a.connect("b")
        host = b.transport.host
        for i in range(1000):
            host.deliver(Message(i, 99, "a", "b"))  # type: ignore[arg-type]  # what a buggy transport might pass
            host.deliver(Message(i, MessageType.REQUEST, EVIL, "b", "x"))  # from a peer that is not connected
    logged = lines(caplog, "node_comm.node")
    unknown = [m for m in logged if "unknown type" in m]
    unconnected = [m for m in logged if "unconnected" in m]
    assert 0 < len(unknown) <= 10 and 0 < len(unconnected) <= 10, logged
    assert_unforged(logged)


async def test_logging_interceptor_rate_limits_inbound_lines_and_escapes_fields(caplog) -> None:
    caplog.set_level(logging.INFO, logger="node_comm.calls")
    log_cfg = InterceptorConfig("logging", {"max_lines_per_second": 5})
    a, b = Node("a", mem("a")), Node("b", mem("b", log_cfg))
    b.register("echo", lambda p, ctx: p)
    async with a, b:
        await a.connect("b")
        for i in range(200):
            await a.notify("b", EVIL, i)
        assert await a.call("b", "echo", 1) == 1
    logged = lines(caplog, "node_comm.calls")
    assert 0 < len(logged) <= 10  # burst of twice the rate
    assert_unforged(logged)
    assert any(f"method={EVIL!r}" in m for m in logged)


async def test_logging_interceptor_rate_limit_can_be_turned_off(caplog) -> None:
    caplog.set_level(logging.INFO, logger="node_comm.calls")
    b = Node("b", mem("b", InterceptorConfig("logging", {"max_lines_per_second": 0})))
    a = Node("a", mem("a"))
    b.register("echo", lambda p, ctx: p)
    async with a, b:
        await a.connect("b")
        for i in range(300):
            await a.call("b", "echo", i)
    assert len(lines(caplog, "node_comm.calls")) == 300


def test_logging_interceptor_refuses_a_negative_rate() -> None:
    from node_comm import ConfigError

    with pytest.raises(ConfigError, match="max_lines_per_second"):
        Node("x", mem("x", InterceptorConfig("logging", {"max_lines_per_second": -1})))
