"""Slow handlers are named, not mistaken for network faults: a blocked event loop and a full
pool of handler threads each log a warning that names the handler."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from node_comm import ConfigError, Node, NodeConfig

WAIT = 10.0


async def test_a_handler_blocking_the_loop_is_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node_comm")
    a = Node("a")
    b = Node("b", NodeConfig(node_id="b", loop_block_warning=0.2))

    async def train(payload: Any, ctx: Any) -> str:
        time.sleep(0.8)  # noqa: ASYNC251 - the mistake under test: blocking inside an async def handler
        return "done"

    b.register("train", train)
    async with a, b:
        await a.connect("b")
        assert await a.call("b", "train", None, timeout=WAIT) == "done"
    blocked = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert blocked, "no warning for a blocked loop"
    assert "'train'" in blocked[0] and "make it a plain def" in blocked[0]


async def test_no_warning_when_the_loop_runs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node_comm")
    a = Node("a")
    b = Node("b", NodeConfig(node_id="b", loop_block_warning=0.2))

    async def nap(payload: Any, ctx: Any) -> str:
        await asyncio.sleep(0.5)
        return "rested"

    b.register("nap", nap)
    async with a, b:
        await a.connect("b")
        assert await a.call("b", "nap", None, timeout=WAIT) == "rested"
    assert not [r for r in caplog.records if "blocked" in r.getMessage()]


async def test_all_handler_threads_busy_names_the_slow_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node_comm")
    a = Node("a")
    b = Node("b", NodeConfig(node_id="b", handler_threads=1))
    release = threading.Event()
    started = threading.Event()

    def crunch(payload: Any, ctx: Any) -> int:
        started.set()
        release.wait(WAIT)
        return int(payload)

    b.register("crunch", crunch)
    async with a, b:
        await a.connect("b")
        first = asyncio.ensure_future(a.call("b", "crunch", 1, timeout=WAIT))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, WAIT)
        warned = asyncio.Event()
        loop = asyncio.get_running_loop()

        class Watch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "busy" in record.getMessage():
                    loop.call_soon_threadsafe(warned.set)

        watch = Watch()
        logging.getLogger("node_comm").addHandler(watch)
        try:
            second = asyncio.ensure_future(a.call("b", "crunch", 2, timeout=WAIT))
            await asyncio.wait_for(warned.wait(), WAIT)
        finally:
            logging.getLogger("node_comm").removeHandler(watch)
        release.set()
        assert await first == 1 and await second == 2
    busy = next(r.getMessage() for r in caplog.records if "busy" in r.getMessage())
    assert "all 1 handler threads are busy" in busy and "'crunch'" in busy and "handler_threads" in busy


@pytest.mark.parametrize("key, value", [("handler_threads", 0), ("handler_threads", True), ("loop_block_warning", 0)])
def test_bad_values_are_config_errors(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        NodeConfig(node_id="x", **{key: value})
