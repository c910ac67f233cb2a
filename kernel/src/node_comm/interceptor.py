"""Interceptors wrap every outbound and inbound call: logging, auth, metrics, ..."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from .context import CallContext
from .message import Message

#: ``next_handler(message)``: passes the message on; resolves to the response (``None`` for notify).
NextHandler = Callable[[Message], Awaitable["Message | None"]]


class Interceptor:
    """Base class: override either method; the default passes the message on unchanged.

    Raise :class:`~node_comm.exceptions.CallRejectedError` (with a code) to refuse a call. Inbound
    interceptors run before the payload is decoded, so they see bytes and metadata only.
    """

    name: str = ""

    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        """Around a call or notify this node sends."""
        return await next_handler(message)

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        """Around a call or notify this node receives, before its handler runs."""
        return await next_handler(message)


class InterceptorChain:
    """The ordered interceptors of one node (``node._interceptor_chain``).

    Outbound and inbound both run in the order added: the first added sees a message first.
    """

    def __init__(self, interceptors: list[Interceptor] | None = None) -> None:
        self._items: list[Interceptor] = list(interceptors or [])

    def add(self, interceptor: Interceptor) -> None:
        """Append ``interceptor`` to the chain."""
        if not isinstance(interceptor, Interceptor):
            raise TypeError(f"expected a node_comm.Interceptor, got {type(interceptor).__name__}")
        self._items.append(interceptor)

    def remove(self, interceptor: Interceptor) -> None:
        """Take ``interceptor`` out of the chain."""
        self._items.remove(interceptor)

    def __iter__(self) -> Iterator[Interceptor]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    async def outbound(self, message: Message, context: CallContext, terminal: NextHandler) -> Message | None:
        """Run ``message`` through every interceptor's ``intercept_outbound``, then ``terminal``."""
        return await self._run(list(self._items), "outbound", message, context, terminal)

    async def inbound(self, message: Message, context: CallContext, terminal: NextHandler) -> Message | None:
        """Run ``message`` through every interceptor's ``intercept_inbound``, then ``terminal``."""
        return await self._run(list(self._items), "inbound", message, context, terminal)

    @staticmethod
    async def _run(
        items: list[Interceptor],
        direction: str,
        message: Message,
        context: CallContext,
        terminal: NextHandler,
    ) -> Message | None:
        handler = terminal
        for interceptor in reversed(items):
            method = interceptor.intercept_outbound if direction == "outbound" else interceptor.intercept_inbound
            handler = _bind(method, context, handler)
        return await handler(message)


def _bind(
    method: Callable[[Message, CallContext, NextHandler], Awaitable[Message | None]],
    context: CallContext,
    nxt: NextHandler,
) -> NextHandler:
    def step(message: Message) -> Awaitable[Message | None]:
        return method(message, context, nxt)

    return step
