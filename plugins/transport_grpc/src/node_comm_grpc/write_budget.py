"""The node-wide budget of large writes in flight.

Each link's writer joins a batch of frames into one buffer and hands it to grpc, which keeps its
own copy until the bytes are on the socket. A broadcast of a large payload to N peers would have
every link doing that at once: N joined batches and N grpc copies beside the one payload. The
budget lets only ``capacity`` bytes of large batches be in flight across all links; the others wait
their turn (first come, first served). Small frames never wait for it.

A write that a peer does not take (it stopped reading) must not hold the budget for good: a
grant stops counting after ``patience`` seconds even if its write has not finished. Memory is then
bounded by ``capacity`` plus one batch per such slow write, and no link waits behind a stuck one
for longer than ``patience``.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Grant", "WriteBudget"]


class Grant:
    """Bytes taken from a :class:`WriteBudget`; :meth:`release` gives them back (once)."""

    __slots__ = ("_budget", "_n", "_timer")

    def __init__(self, budget: WriteBudget, n: int, timer: asyncio.TimerHandle | None) -> None:
        self._budget: WriteBudget | None = budget
        self._n = n
        self._timer = timer

    def release(self) -> None:
        """The write is done (or stopped counting): its bytes are the budget's again."""
        budget, self._budget = self._budget, None
        if budget is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        budget._give(self._n)


class WriteBudget:
    """``capacity`` bytes of large writes in flight across a node's links (see the module text)."""

    __slots__ = ("_waiters", "capacity", "patience", "peak", "used")

    def __init__(self, capacity: int, patience: float) -> None:
        self.capacity = capacity
        self.patience = patience
        self.used = 0
        self.peak = 0  # the most ever in flight (for tests and the curious)
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    def _fits(self, n: int) -> bool:
        # One write always fits when nothing else is in flight, however large it is.
        return self.used == 0 or self.used + n <= self.capacity

    async def take(self, n: int) -> Grant:
        """Wait until ``n`` bytes fit (in order of asking), then take them."""
        waiters = self._waiters
        while waiters and waiters[0][0].done():  # takers cancelled while waiting
            waiters.popleft()
        if not waiters and self._fits(n):
            self._count(n)
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters.append((fut, n))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # granted, but the taker is gone
                    self._give(n)
                raise
        grant = Grant(self, n, None)
        if self.patience:
            grant._timer = asyncio.get_running_loop().call_later(self.patience, grant.release)
        return grant

    def _count(self, n: int) -> None:
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def _give(self, n: int) -> None:
        self.used -= n
        waiters = self._waiters
        while waiters:
            fut, want = waiters[0]
            if fut.done():  # its taker was cancelled while waiting
                waiters.popleft()
                continue
            if not self._fits(want):
                return
            waiters.popleft()
            self._count(want)
            fut.set_result(None)
