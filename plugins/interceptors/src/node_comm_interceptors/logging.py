"""``logging``: one stdlib log record per call: method, peer, direction, size, duration, outcome.

Payload contents and metadata values (credentials) are never logged unless asked for.
"""

from __future__ import annotations

import logging
import time

from node_comm import CallContext, Interceptor, Message, MessageType, NodeCommError
from node_comm.interceptor import NextHandler


class LoggingInterceptor(Interceptor):
    """Options: ``logger`` (name, default ``node_comm.calls``), ``level`` (default ``INFO``),
    ``log_payloads`` (default false: payload bytes are never logged otherwise)."""

    name = "logging"

    def __init__(self, logger: str = "node_comm.calls", level: str | int = "INFO", log_payloads: bool = False):
        self.logger = logging.getLogger(logger)
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
        return await self._around("outbound", context.target, message, next_handler)

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        return await self._around("inbound", context.source, message, next_handler)

    async def _around(self, direction: str, peer: str, message: Message, next_handler: NextHandler) -> Message | None:
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
            self.logger.log(
                self.level,
                "%s %s %s peer=%s method=%s size=%d reply_size=%d duration_ms=%.2f outcome=%s%s",
                direction, kind, message.serializer, peer, message.method, len(message.payload),
                len(reply.payload) if reply is not None else 0, ms, outcome, extra,
            )
