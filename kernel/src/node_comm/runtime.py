"""What the parts of a node share: its id and config, its transport, the event loop it runs on,
its background tasks, the worker threads that (de)serialize large payloads, and its peer-caused
log lines (rate-limited)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._offload import codec_pool
from ._timers import DeadlineTimers
from .config import NodeConfig
from .exceptions import NodeCommError
from .message import Message
from .peer_logging import RateLimitedLog
from .transport import Transport
from .watchdog import HandlerCodes, LoopWatchdog

log = logging.getLogger("node_comm.node")


class Runtime:
    """The state a node's outbound calls, inbound dispatch and peer table all use."""

    def __init__(self, node_id: str, config: NodeConfig, transport: Transport) -> None:
        self.node_id = node_id
        self.config = config
        self.transport = transport
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timers: DeadlineTimers | None = None
        self.started = False
        self.stopping = False
        self.background: set[asyncio.Task[Any]] = set()
        self.codec: ThreadPoolExecutor | None = None  # large payloads' (de)serialization; see _offload
        self.handlers: ThreadPoolExecutor | None = None  # plain ``def`` handlers (handler_threads)
        #: Plain ``def`` handlers running now, by method name (for the "all threads busy" warning).
        self.busy: Counter[str] = Counter()
        # Lines a peer can cause go through rlog (rate-limited), what the peer supplied as %r.
        self.rlog = RateLimitedLog(log)
        self._watchdog: LoopWatchdog | None = None

    def begin(self) -> None:
        """Bind to the running loop (``Node.start``)."""
        self.loop = asyncio.get_running_loop()
        self.timers = DeadlineTimers(self.loop)
        self.stopping = False

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` as a background task of the node (cancelled when it stops)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            if inspect.iscoroutine(coro):
                coro.close()
            return
        task = asyncio.ensure_future(coro, loop=loop)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def send_quiet(self, msg: Message) -> None:
        """Send a reply, cancel or heartbeat; a vanished peer is not an error for us."""
        try:
            await self.transport.send(msg)
        except NodeCommError as exc:
            self.rlog.debug(
                ("send", msg.target),
                "%s: could not send %s to %r: %r",
                self.node_id,
                msg.type.name,
                msg.target,
                str(exc),
            )
        except Exception:
            self.rlog.exception(
                ("send", msg.target), "%s: transport failed to send %s to %r", self.node_id, msg.type.name, msg.target
            )

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in the node's codec pool. Cancelling the awaiting task drops the
        result; work not yet started never runs, work running finishes and is discarded."""
        loop = self.loop
        assert loop is not None
        pool = self.codec
        if pool is None:
            pool = self.codec = codec_pool(self.node_id)
        return loop.run_in_executor(pool, fn, *args)

    async def run_handler(self, method: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a plain ``def`` handler in the node's handler pool (``handler_threads``), warning
        when every thread is busy (the call then waits for one)."""
        loop = self.loop
        assert loop is not None
        pool = self.handlers
        if pool is None:
            size = self.config.handler_threads
            pool = self.handlers = ThreadPoolExecutor(size, thread_name_prefix=f"node-comm-handler-{self.node_id}")
        busy = self.busy
        if sum(busy.values()) >= self.config.handler_threads:
            running = ", ".join(f"{name!r} x{n}" for name, n in busy.most_common(3))
            self.rlog.warning(
                ("threads-busy", method),
                "%s: all %d handler threads are busy (running: %s); %r waits for one: "
                "make slow handlers async, or raise handler_threads",
                self.node_id,
                self.config.handler_threads,
                running,
                method,
            )
        busy[method] += 1
        try:
            return await loop.run_in_executor(pool, fn, *args)
        finally:
            busy[method] -= 1
            if not busy[method]:
                del busy[method]

    def watch(self, threshold: float, handlers: HandlerCodes) -> None:
        """Warn when the loop is blocked for ``threshold`` seconds, naming the handler (see watchdog)."""
        self._watchdog = LoopWatchdog.attach(self.node_id, threshold, handlers)

    def close(self, me: asyncio.Task[Any] | None) -> None:
        """Cancel the background tasks (but ``me``), stop the timers, the pools and the watchdog."""
        if self._watchdog is not None:
            self._watchdog.detach(self.node_id)
            self._watchdog = None
        if self.timers is not None:
            self.timers.close()
        for task in list(self.background):
            if task is not me:
                task.cancel()
        if self.codec is not None:
            # Work still queued belongs to calls still waiting for it (a cancelled wait
            # cancels its queued work): let it finish rather than fail them with CancelledError.
            self.codec.shutdown(wait=False)
            self.codec = None
        if self.handlers is not None:
            self.handlers.shutdown(wait=False)
            self.handlers = None
