"""Logging what a peer can cause: rate-limited, so a flood of bad frames or failing calls cannot
fill a disk or drown the lines that matter; and escaped, so no peer can forge a line.

Each line names a *key* (what happened and with whom, e.g. ``("unknown-frame", peer_id)``). Every
key has a token bucket (``burst`` lines at once, refilled at ``rate`` lines per second), and all
keys of one :class:`RateLimitedLog` share a second bucket (``total_burst``, ``total_rate``), so many
peers (or many made-up keys) cannot add up to a flood either. A line that passes after some were
suppressed says how many: ``... (41 similar lines suppressed)``.

Callers still escape what a peer supplied (method names, node ids, reasons, error texts) with
``%r``, so no peer can start a new line or forge one; in ``key=value`` lines, :func:`token` prints
plain values bare and quotes the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable


def token(value: object) -> str:
    """``value`` as one unforgeable field of a ``key=value`` log line: bare when it is a plain
    printable word (``store``, ``node-1``), else its ``repr`` (``'a b'``, ``'x\\nforged=1'``)."""
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in " \"'=\\"):
        return text
    return repr(text)


class _Bucket:
    __slots__ = ("last", "suppressed", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now
        self.suppressed = 0

    def take(self, now: float, rate: float, burst: float) -> bool:
        tokens = min(burst, self.tokens + (now - self.last) * rate)
        self.last = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


class RateLimitedLog:
    """Wraps ``logger``: ``rlog.warning(key, "%s: bad frame from %r", node_id, peer)``.

    At most ``burst`` lines per key at once and ``rate`` per second after that; at most
    ``total_burst`` / ``total_rate`` over all keys. At most ``max_keys`` keys are tracked (the
    oldest is forgotten first), so the limiter itself is bounded.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        rate: float = 1.0,
        burst: int = 10,
        total_rate: float = 10.0,
        total_burst: int = 100,
        max_keys: int = 1024,
    ) -> None:
        self.logger = logger
        self.rate = rate
        self.burst = burst
        self.total_rate = total_rate
        self.total_burst = total_burst
        self.max_keys = max_keys
        self._buckets: dict[Hashable, _Bucket] = {}
        self._total = _Bucket(float(total_burst), time.monotonic())

    def allow(self, key: Hashable) -> int | None:
        """Take a token for ``key``: ``None`` when the line must be dropped, else how many lines of
        this key were suppressed since the last one that passed."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        if not bucket.take(now, self.rate, self.burst) or not self._total.take(now, self.total_rate, self.total_burst):
            bucket.suppressed += 1
            return None
        suppressed, bucket.suppressed = bucket.suppressed, 0
        return suppressed

    def log(self, level: int, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> None:
        """Log ``msg % args`` at ``level`` unless ``key`` (or this log as a whole) is over its rate."""
        self._emit(level, key, msg, args, exc_info)

    def debug(self, key: Hashable, msg: str, *args: object) -> None:
        self._emit(logging.DEBUG, key, msg, args, False)

    def info(self, key: Hashable, msg: str, *args: object) -> None:
        self._emit(logging.INFO, key, msg, args, False)

    def warning(self, key: Hashable, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, key, msg, args, False)

    def exception(self, key: Hashable, msg: str, *args: object) -> None:
        """An ERROR line with the current exception's traceback."""
        self._emit(logging.ERROR, key, msg, args, True)

    def _emit(self, level: int, key: Hashable, msg: str, args: tuple[object, ...], exc_info: bool) -> None:
        if not self.logger.isEnabledFor(level):
            return
        suppressed = self.allow(key)
        if suppressed is None:
            return
        if suppressed:
            msg = f"{msg} (%d similar lines suppressed)"
            args = (*args, suppressed)
        # stacklevel 3: the record names the line that called log()/warning()/..., not this module.
        self.logger.log(level, msg, *args, exc_info=exc_info, stacklevel=3)
