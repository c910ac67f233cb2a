"""``logging``: one stdlib log record per call: method, peer, direction, size, duration, outcome.

Payload contents and metadata values (credentials) are never logged unless asked for. What a peer
supplied (method, ids, codes) is printed so it cannot forge a line or a field, and lines of inbound
calls are rate-limited per peer, so a flood of calls cannot fill the disk.
"""

from __future__ import annotations

import logging
import time

from node_comm import CallContext, Interceptor, Message, MessageType, NodeCommError
from node_comm.interceptor import NextHandler
from node_comm.message import payload_size
from node_comm.peer_logging import RateLimitedLog, token


class LoggingInterceptor(Interceptor):
    """Options: ``logger`` (name, default ``node_comm.calls``), ``level`` (default ``INFO``),
    ``log_payloads`` (default false: payload bytes are never logged otherwise),
    ``max_lines_per_second`` (lines of inbound calls per peer, default 100, bursts of twice that;
    all peers together ten times that; ``0``: no limit). Lines past it are dropped and counted in
    the next line that passes."""

    name = "logging"

    def __init__(
        self,
        logger: str = "node_comm.calls",
        level: str | int = "INFO",
        log_payloads: bool = False,
        max_lines_per_second: float = 100.0,
    ):
        self.logger = logging.getLogger(logger)
        if not max_lines_per_second >= 0:
            raise ValueError(
                f"max_lines_per_second: expected a number >= 0 (0: no limit), got {max_lines_per_second!r}"
            )
        rate = max_lines_per_second
        self._inbound = (
            RateLimitedLog(
                self.logger,
                rate=rate,
                burst=max(1, int(2 * rate)),
                total_rate=10 * rate,
                total_burst=max(1, int(20 * rate)),
            )
            if rate
            else None
        )
        if isinstance(level, str):
            resolved = logging.getLevelName(level.upper())
            if not isinstance(resolved, int):
                raise ValueError(f"level: unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
            level = resolved
        self.level = level
        self.log_payloads = log_payloads

    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        return await self._around("outbound", context.target, message, next_handler, None)

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        return await self._around("inbound", context.source, message, next_handler, self._inbound)

    async def _around(
        self, direction: str, peer: str, message: Message, next_handler: NextHandler, limit: RateLimitedLog | None
    ) -> Message | None:
        if not self.logger.isEnabledFor(self.level):
            return await next_handler(message)
        start = time.perf_counter()
        kind = "notify" if message.type is MessageType.NOTIFY else "call"
        outcome = "ok"
        reply: Message | None = None
        try:
            reply = await next_handler(message)
            if reply is not None and reply.error is not None:
                outcome = reply.error.code
            return reply
        except NodeCommError as exc:
            outcome = str(exc.code)
            raise
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000
            extra = f" payload={message.payload!r}" if self.log_payloads else ""
            args = (
                direction,
                kind,
                token(message.serializer),
                token(peer),
                token(message.method),
                payload_size(message),
                payload_size(reply) if reply is not None else 0,
                ms,
                token(outcome),
                extra,
            )
            fmt = "%s %s %s peer=%s method=%s size=%d reply_size=%d duration_ms=%.2f outcome=%s%s"
            if limit is None:
                self.logger.log(self.level, fmt, *args)
            else:
                limit.log(self.level, peer, fmt, *args)
