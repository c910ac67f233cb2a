"""``connect`` / ``disconnect`` / ``transfer`` event handlers, sync or async."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from .exceptions import ConfigError

log = logging.getLogger("node_comm.events")

EVENTS = ("connect", "disconnect", "transfer", "gave_up")
EventHandler = Callable[..., Any]


class EventEmitter:
    """Handlers per event; a failing handler is logged and never stops the others or the node."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[EventHandler]] = {e: [] for e in EVENTS}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _list(self, event: str) -> list[EventHandler]:
        try:
            return self._handlers[event]
        except KeyError:
            raise ConfigError(f"unknown event {event!r}; events are: {', '.join(EVENTS)}") from None

    def on(self, event: str, handler: EventHandler) -> None:
        if not callable(handler):
            raise TypeError(f"event handler for {event!r} must be callable, got {type(handler).__name__}")
        self._list(event).append(handler)

    def off(self, event: str, handler: EventHandler | None = None) -> None:
        handlers = self._list(event)
        if handler is None:
            handlers.clear()
        else:
            # Remove every registration of this handler; absent is not an error.
            handlers[:] = [h for h in handlers if h != handler]

    def emit(self, event: str, *args: Any) -> None:
        for handler in list(self._handlers[event]):
            try:
                result = handler(*args)
            except Exception:
                log.exception("%s handler %r failed", event, handler)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event handler failed", exc_info=task.exception())

    async def drain(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` seconds) for async handlers still running."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
