"""Run one write coroutine to completion without a task.

A sender on an idle link starts its frame's write itself, in its own step (one event-loop hop
less than waking the writer task). The write must not run *in* the sender: cancelling the sender
(a call's timeout) would cancel a write half-done, and grpc.aio then cancels the whole stream. So
the coroutine is stepped by hand: each future it waits on resumes it from a done callback, and the
outcome (``None`` or the exception) goes to ``on_done``. Nothing awaits it, so nothing can cancel it.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["EAGER", "DirectWrite", "WriteState", "start_write"]

#: Python 3.12+: start direct writes as eager tasks (asyncio's own machinery, same hop saved);
#: ``NODE_COMM_GRPC_EAGER_WRITE=0`` forces the hand-driven path (to compare them).
EAGER = sys.version_info >= (3, 12) and os.environ.get("NODE_COMM_GRPC_EAGER_WRITE", "1") != "0"


class WriteState(enum.Enum):
    RUNNING = "running"  # waiting on a future (or the next loop iteration)
    DONE = "done"  # returned; on_done(None) was called
    FAILED = "failed"  # raised (CancelledError included); on_done(exc) was called
    CLOSED = "closed"  # abandoned by close(): the coroutine was closed, on_done not called


class DirectWrite:
    """Steps ``coro`` until it returns or raises, then calls ``on_done`` once with ``None`` or the
    exception. The first step runs in ``__init__`` (``on_done`` may be called before it returns).
    ``KeyboardInterrupt`` and ``SystemExit`` propagate to whoever steps it (the sender, or the loop)."""

    __slots__ = ("_coro", "_loop", "_on_done", "_waiting", "state")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[BaseException | None], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._coro = coro
        self._on_done = on_done
        self._loop = loop
        self._waiting: asyncio.Future[Any] | None = None
        self.state = WriteState.RUNNING
        self._step()

    def _step(self, _fut: object = None) -> None:
        if self.state is not WriteState.RUNNING:
            return
        self._waiting = None
        try:
            fut = self._coro.send(None)
        except StopIteration:
            self._finish(WriteState.DONE, None)
            return
        except asyncio.CancelledError as exc:  # the stream's call was cancelled under the write
            self._finish(WriteState.FAILED, exc)
            return
        except Exception as exc:  # a broken stream
            self._finish(WriteState.FAILED, exc)
            return
        if fut is None:  # a bare ``yield``: resume on the next loop iteration
            self._loop.call_soon(self._step)
            return
        # What a Task does with the future a coroutine yields: clear the flag that says "a Task
        # waits on me", then resume when it is done (``await`` inside retrieves its result).
        fut._asyncio_future_blocking = False
        self._waiting = fut
        fut.add_done_callback(self._step)

    def _finish(self, state: WriteState, exc: BaseException | None) -> None:
        self.state = state
        on_done, self._on_done = self._on_done, _ignore
        on_done(exc)

    def close(self) -> None:
        """Abandon a write still running (its future may never resolve): stop listening to the
        future and close the coroutine. No-op once it ended."""
        if self.state is not WriteState.RUNNING:
            return
        self.state = WriteState.CLOSED
        self._on_done = _ignore
        fut, self._waiting = self._waiting, None
        if fut is not None:
            fut.remove_done_callback(self._step)
        self._coro.close()


def _ignore(_exc: BaseException | None) -> None:
    pass


def start_write(
    coro: Coroutine[Any, Any, Any],
    on_done: Callable[[BaseException | None], None],
    loop: asyncio.AbstractEventLoop,
) -> DirectWrite | asyncio.Task[Any]:
    """Start ``coro`` now, in the caller's step, as a write no caller's cancellation reaches;
    ``on_done(None | exception)`` once it ends. An eager task on Python 3.12+ (see ``EAGER``), a
    :class:`DirectWrite` before. Keep the returned object while the write runs."""
    if not EAGER:
        return DirectWrite(coro, on_done, loop)
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]

    def done(t: asyncio.Task[Any]) -> None:
        on_done(asyncio.CancelledError() if t.cancelled() else t.exception())

    if task.done():
        done(task)
    else:
        task.add_done_callback(done)
    return task
