"""Dialling a peer: retries with backoff until a deadline, and one outcome shared by concurrent
dials of the same peer (for transports)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator

from .exceptions import ConnectFailedError
from .transport import Transport

#: Backoff between attempts: from INITIAL seconds, doubling, at most MAX, times a random factor
#: in [1 - JITTER, 1 + JITTER] (so many participants started together do not dial in step).
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 2.0
JITTER = 0.2


def backoff(
    initial: float = INITIAL_BACKOFF,
    maximum: float = MAX_BACKOFF,
    *,
    multiplier: float = 2.0,
    jitter: float = JITTER,
    floor: float = 0.0,
) -> Iterator[float]:
    """Seconds to wait before each next attempt, forever: from ``initial``, times ``multiplier``
    each time, at most ``maximum``, each times a random factor in ``[1 - jitter, 1 + jitter]`` (so
    many nodes started together do not dial in step) and never below ``floor``."""
    delay = initial
    while True:
        yield max(floor, delay * random.uniform(1 - jitter, 1 + jitter))
        delay = min(delay * multiplier, maximum)


async def retry_connect(
    transport: Transport,
    node_id: str,
    address: str | None,
    attempt_timeout: float,
    retry: float,
    connected: Callable[[], bool],
) -> None:
    """``transport.connect`` until it succeeds (or ``connected()`` says the peer dialled us), for
    at most ``retry`` seconds; then the last :class:`ConnectFailedError`, saying how long it tried."""
    deadline = time.monotonic() + retry
    delays = backoff()
    attempts = 0
    while True:
        attempts += 1
        left = deadline - time.monotonic()
        try:
            await transport.connect(node_id, address, max(0.01, min(attempt_timeout, left)))
            return
        except ConnectFailedError as exc:
            if connected():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectFailedError(
                    node_id, f"{exc.message} (tried {attempts} times for {retry:g}s)", address
                ) from exc
        await asyncio.sleep(min(left, next(delays)))


class SharedConnects:
    """Connects in flight, by peer id: a second ``run`` for a peer whose connect is under way
    waits for that one and gets its outcome (its result or its exception) instead of dialling again.

    Transports use it so concurrent ``connect(node_id)`` calls make one link. Cancelling a waiter
    does not cancel the connect it waits for; when the connect itself is cancelled, its waiters
    see :class:`asyncio.CancelledError`.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[None]] = {}

    def busy(self, node_id: str) -> bool:
        """Whether a connect to ``node_id`` is under way."""
        return node_id in self._inflight

    async def run(self, node_id: str, connect: Callable[[], Awaitable[None]]) -> bool:
        """Await ``connect()``, or the connect to ``node_id`` already under way; True when this
        call ran ``connect`` itself, False when it shared another one's outcome."""
        inflight = self._inflight.get(node_id)
        if inflight is not None:
            await asyncio.shield(inflight)
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[node_id] = fut
        try:
            await connect()
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved here; waiters get it through the shield
            raise
        else:
            fut.set_result(None)
        finally:
            if not fut.done():  # cancelled (or another BaseException): waiters are cancelled too
                fut.cancel()
            if self._inflight.get(node_id) is fut:
                del self._inflight[node_id]
        return True
