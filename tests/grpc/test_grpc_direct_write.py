"""The direct-write helper alone: a write coroutine run to completion without a task."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import types
from typing import Any

import pytest

from node_comm_grpc.direct_write import DirectWrite, WriteState


class Outcome:
    def __init__(self) -> None:
        self.calls: list[BaseException | None] = []
        self.event = asyncio.Event()

    def __call__(self, exc: BaseException | None) -> None:
        self.calls.append(exc)
        self.event.set()


async def test_completes_after_waiting_on_futures() -> None:
    loop = asyncio.get_running_loop()
    a: asyncio.Future[int] = loop.create_future()
    b: asyncio.Future[int] = loop.create_future()
    seen: list[int] = []

    async def write() -> None:
        seen.append(await a)
        seen.append(await b)

    done = Outcome()
    w = DirectWrite(write(), done, loop)
    assert w.state is WriteState.RUNNING and done.calls == []
    a.set_result(1)
    loop.call_soon(b.set_result, 2)
    await asyncio.wait_for(done.event.wait(), 5)
    assert seen == [1, 2]
    assert done.calls == [None]
    assert w.state is WriteState.DONE


async def test_completes_synchronously_when_nothing_waits() -> None:
    async def write() -> None:
        return None

    done = Outcome()
    w = DirectWrite(write(), done, asyncio.get_running_loop())
    assert done.calls == [None] and w.state is WriteState.DONE


async def test_raise_is_reported_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[None]] = [loop.create_future()]

    async def write() -> None:
        await futs[0]  # the stream breaks under the write

    done = Outcome()
    w = DirectWrite(write(), done, loop)
    futs[0].set_exception(ConnectionResetError("stream broke"))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await asyncio.wait_for(done.event.wait(), 5)
        futs.clear()  # an exception nobody retrieved would be logged when the future is collected
        gc.collect()
    assert len(done.calls) == 1 and isinstance(done.calls[0], ConnectionResetError)
    assert w.state is WriteState.FAILED
    assert "never retrieved" not in caplog.text


async def test_cancelled_error_from_the_write_is_reported() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    async def write() -> None:
        await fut

    done = Outcome()
    w = DirectWrite(write(), done, loop)
    fut.cancel()  # grpc.aio: the call was cancelled under the write
    await asyncio.wait_for(done.event.wait(), 5)
    assert len(done.calls) == 1 and isinstance(done.calls[0], asyncio.CancelledError)
    assert w.state is WriteState.FAILED


async def test_keyboard_interrupt_propagates() -> None:
    async def write() -> None:
        raise KeyboardInterrupt

    done = Outcome()
    with pytest.raises(KeyboardInterrupt):
        DirectWrite(write(), done, asyncio.get_running_loop())
    assert done.calls == []


async def test_a_future_never_resolved_can_be_abandoned() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    finalized = asyncio.Event()

    async def write() -> None:
        try:
            await fut
        finally:
            finalized.set()

    coro = write()
    done = Outcome()
    w = DirectWrite(coro, done, loop)
    w.close()
    assert w.state is WriteState.CLOSED
    assert finalized.is_set()
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    fut.set_result(None)  # resolving it later resumes nothing
    await asyncio.sleep(0)
    assert done.calls == []
    w.close()  # idempotent


async def test_cancelling_the_sender_does_not_stop_the_write() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    started = asyncio.Event()
    finished: list[str] = []
    done = Outcome()

    async def write() -> None:
        await fut
        finished.append("written")

    async def sender() -> None:
        DirectWrite(write(), done, loop)
        started.set()
        await asyncio.Event().wait()  # waits for its reply, then is cancelled (a timeout)

    task = loop.create_task(sender())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fut.cancelled()
    fut.set_result(None)
    await asyncio.wait_for(done.event.wait(), 5)
    assert finished == ["written"] and done.calls == [None]


@types.coroutine
def _bare_yield() -> Any:
    yield  # what asyncio.sleep(0) does


async def test_bare_yield_resumes_on_the_next_iteration() -> None:
    loop = asyncio.get_running_loop()
    steps: list[str] = []

    async def write() -> None:
        steps.append("before")
        await _bare_yield()
        steps.append("after")

    done = Outcome()
    w = DirectWrite(write(), done, loop)
    assert steps == ["before"] and w.state is WriteState.RUNNING
    await asyncio.wait_for(done.event.wait(), 5)
    assert steps == ["before", "after"] and done.calls == [None]


async def test_close_while_waiting_for_the_next_iteration() -> None:
    loop = asyncio.get_running_loop()
    steps: list[str] = []

    async def write() -> None:
        await _bare_yield()
        steps.append("resumed")

    done = Outcome()
    w = DirectWrite(write(), done, loop)
    w.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert steps == [] and done.calls == [] and w.state is WriteState.CLOSED


@pytest.mark.parametrize("eager", [False, True])
async def test_start_write_either_way(eager: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``start_write``: a DirectWrite, or an eager task on 3.12+; the sender's cancellation does not
    reach the write, and an error is reported once."""
    import sys

    from node_comm_grpc import direct_write

    if eager and sys.version_info < (3, 12):
        pytest.skip("eager tasks need Python 3.12")
    monkeypatch.setattr(direct_write, "EAGER", eager)
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[None]] = [loop.create_future(), loop.create_future()]
    steps: list[str] = []

    async def write(i: int) -> None:
        steps.append(f"start {i}")  # in the caller's step, either way
        await futs[i]

    ok, bad = Outcome(), Outcome()

    async def sender() -> None:
        direct_write.start_write(write(0), ok, loop)
        assert steps == ["start 0"]
        await asyncio.Event().wait()

    task = loop.create_task(sender())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    futs[0].set_result(None)
    await asyncio.wait_for(ok.event.wait(), 5)
    assert ok.calls == [None]
    kept = direct_write.start_write(write(1), bad, loop)
    futs[1].set_exception(ConnectionResetError("broke"))
    await asyncio.wait_for(bad.event.wait(), 5)
    assert len(bad.calls) == 1 and isinstance(bad.calls[0], ConnectionResetError)
    del kept
