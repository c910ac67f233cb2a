"""A warning when the event loop is blocked, naming the handler that blocks it.

An ``async def`` handler that calls something blocking (``time.sleep``, a long computation) stalls
every call and heartbeat of the node, which then looks like a network fault. One thread per event
loop (shared by every node on it) watches a tick the loop refreshes; when the tick is older than a
node's ``loop_block_warning``, it looks at the loop thread's stack, finds a registered handler in
it, and logs one warning per stall.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType, FrameType

log = logging.getLogger("node_comm.node")

HandlerCodes = Callable[[], dict[CodeType, str]]


def handler_code(handler: Callable[..., object]) -> CodeType | None:
    """The code object of a handler function (or of a callable object's ``__call__``)."""
    code = getattr(handler, "__code__", None)
    if code is None:
        code = getattr(getattr(handler, "__call__", None), "__code__", None)  # noqa: B004
    return code if isinstance(code, CodeType) else None


class LoopWatchdog:
    """The watchdog of one event loop; nodes :meth:`attach` to it and :meth:`detach` when stopping."""

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWatchdog] = weakref.WeakKeyDictionary()

    @classmethod
    def attach(cls, node_id: str, threshold: float, handlers: HandlerCodes) -> LoopWatchdog:
        """Watch the running loop for node ``node_id`` (``handlers()``: its handler code -> method)."""
        loop = asyncio.get_running_loop()
        dog = cls._of_loop.get(loop)
        if dog is None or not dog._nodes:
            dog = cls._of_loop[loop] = cls(loop)
        dog._nodes[node_id] = (threshold, handlers)
        lowest = min(t for t, _ in dog._nodes.values())
        if lowest < dog._threshold:  # beat faster from now on
            dog._threshold = lowest
            if dog._timer is not None:
                dog._timer.cancel()
            dog._beat()
        return dog

    def detach(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)
        if not self._nodes:
            self._stop.set()
            if self._timer is not None:
                self._timer.cancel()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._nodes: dict[str, tuple[float, HandlerCodes]] = {}
        self._threshold = float("inf")
        self._tick = time.monotonic()
        self._stop = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        threading.Thread(target=self._watch, name="node-comm-loop-watchdog", daemon=True).start()

    def _beat(self) -> None:
        self._tick = time.monotonic()
        if not self._stop.is_set() and not self._loop.is_closed():
            self._timer = self._loop.call_later(self._threshold / 4, self._beat)

    def _watch(self) -> None:
        warned_for = 0.0
        while not self._stop.wait(min(self._threshold / 4, 0.25)):
            tick = self._tick
            stalled = time.monotonic() - tick
            # The tick is refreshed every threshold/4: older than threshold + that is a stall.
            if stalled < 1.25 * self._threshold or tick == warned_for or self._loop.is_closed():
                continue
            warned_for = tick  # one warning per stall
            self._warn(stalled, sys._current_frames().get(self._loop_thread))

    def _warn(self, stalled: float, frame: FrameType | None) -> None:
        nodes = list(self._nodes.items())
        codes = {code: (node_id, name) for node_id, (_, handlers) in nodes for code, name in handlers().items()}
        while frame is not None:
            found = codes.get(frame.f_code)
            if found is not None:
                node_id, method = found
                log.warning(
                    "%s: the event loop has been blocked for %.1fs by handler %r (%s:%d): an async def "
                    "handler must not block; make it a plain def (it then runs in a thread) or "
                    "await asyncio.to_thread(...) for the blocking part",
                    node_id,
                    stalled,
                    method,
                    frame.f_code.co_filename,
                    frame.f_lineno,
                )
                return
            frame = frame.f_back
        names = ", ".join(repr(n) for n, _ in nodes)
        log.warning("%s: the event loop has been blocked for %.1fs (calls and heartbeats wait)", names, stalled)
