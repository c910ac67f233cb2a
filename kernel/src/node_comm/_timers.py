"""Many call deadlines on one event-loop timer.

``loop.call_later`` per call costs a ``TimerHandle`` (Python ``__init__``, Python ``__lt__`` on every
heap comparison, a Python ``cancel``); with thousands of calls in flight that was about a fifth of a
memory-transport call. Here every deadline is a ``[when, seq, fn, arg]`` list in one heap (compared
in C), and one loop timer is armed for the earliest. Each deadline still fires on the loop at its
exact time, as ``loop.call_at`` would; cancelled entries are dropped lazily and compacted when they
outnumber the live ones.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

Entry = list[Any]  # [when, seq, fn | None, arg]


class DeadlineTimers:
    """``call_at(when, fn, arg)`` / ``cancel(entry)`` for one event loop (not thread-safe)."""

    __slots__ = ("_armed", "_armed_when", "_cancelled", "_heap", "_loop", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._armed: asyncio.TimerHandle | None = None
        self._armed_when = 0.0
        self._cancelled = 0

    def call_at(self, when: float, fn: Callable[[Any], object], arg: Any) -> Entry:
        """Call ``fn(arg)`` on the loop at loop time ``when``; returns the entry for :meth:`cancel`."""
        entry: Entry = [when, next(self._seq), fn, arg]
        heapq.heappush(self._heap, entry)
        if self._armed is None or when < self._armed_when:
            self._arm(when)
        return entry

    def cancel(self, entry: Entry) -> None:
        """Forget ``entry``; a no-op when it already ran or was cancelled."""
        if entry[2] is None:
            return
        entry[2] = entry[3] = None
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 256 and self._cancelled * 2 > len(heap):
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self._cancelled = 0

    def close(self) -> None:
        """Drop every entry and the loop timer."""
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        for e in self._heap:
            e[2] = e[3] = None
        self._heap.clear()
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_when = when
        self._armed = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._armed = None
        loop = self._loop
        heap = self._heap
        # Same rule as the loop itself: a timer within the clock resolution of now is due.
        now = loop.time() + getattr(loop, "_clock_resolution", 0.0)
        while heap:
            entry = heap[0]
            fn = entry[2]
            if fn is None:
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if entry[0] > now:
                self._arm(entry[0])
                return
            heapq.heappop(heap)
            arg = entry[3]
            entry[2] = entry[3] = None
            try:
                fn(arg)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                loop.call_exception_handler({"message": f"exception in deadline callback {fn!r}", "exception": exc})
