"""Dialling a peer that may not be up yet: retries with backoff until a deadline."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from .exceptions import ConnectFailedError
from .transport import Transport

#: Backoff between attempts: from INITIAL seconds, doubling, at most MAX, times a random factor
#: in [1 - JITTER, 1 + JITTER] (so many participants started together do not dial in step).
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 2.0
JITTER = 0.2


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
    delay = INITIAL_BACKOFF
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
        await asyncio.sleep(min(left, delay * random.uniform(1 - JITTER, 1 + JITTER)))
        delay = min(delay * 2, MAX_BACKOFF)
