"""``Node``: registers methods, calls other nodes' methods, and serves calls from them."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ._offload import codec_pool, looks_large
from ._timers import DeadlineTimers, Entry
from .assembly import assemble
from .config import MethodOptions, NodeConfig
from .context import CallContext, current_deadline
from .events import EventEmitter, EventHandler
from .exceptions import (
    CallRejectedError,
    CallTimeoutError,
    ConfigError,
    ConnectionLostError,
    ErrorCode,
    NodeCommError,
    NodeNotConnectedError,
    NodeNotStartedError,
    PayloadTooLargeError,
    RemoteExecutionError,
    SerializationError,
)
from .interceptor import InterceptorChain
from .message import ErrorInfo, Message, MessageType
from .peer_logging import RateLimitedLog
from .plugins import Registries
from .serializer import Serializer, SerializerRegistry
from .transport import HEARTBEAT_TIMEOUT_REASON, Transport, disconnect_accepts_may_return

log = logging.getLogger("node_comm.node")

Handler = Callable[[Any, CallContext], Any]

_REQUEST = MessageType.REQUEST
_NOTIFY = MessageType.NOTIFY
_RESPONSE = MessageType.RESPONSE
_ERROR = MessageType.ERROR
_CANCEL = MessageType.CANCEL
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_ACK = MessageType.HEARTBEAT_ACK


@dataclass(slots=True)
class _Method:
    name: str
    handler: Handler
    serializer: str
    is_async: bool
    authenticated_only: bool = False


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Message]
    target: str
    method: str
    timeout: float | None
    timer: Entry | None = None
    #: The caller's task while it is inside ``transport.send`` (see ``Node._stop_sending``).
    sending: asyncio.Task[Any] | None = None
    stopped: bool = False


@dataclass(slots=True)
class _Peer:
    address: str | None
    last_seen: float  # time of the last message of any kind from the peer
    inbound: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    identity: str | None = None  # how the transport authenticated it; None: not authenticated
    #: Inbound tasks the caller cancelled (their slot is free again) that have not finished yet.
    cancelling: set[asyncio.Task[None]] = field(default_factory=set)
    notifies: int = 0  # notify handlers running
    #: Notifies past max_concurrent_notifies_per_peer, run as running ones finish.
    held: deque[Message] = field(default_factory=deque)
    #: Completed when the transport may read from the peer again (see ``reading_paused``).
    resume: asyncio.Future[None] | None = None
    pinging: bool = False  # a heartbeat to the peer is being sent
    acking: bool = False  # a heartbeat ack to the peer is being sent


def _task_is_cancelled() -> bool:
    """Whether the current task is being cancelled (always assumed on Python 3.10, which cannot
    tell a cancellation from a CancelledError raised by the code it runs)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _inbound_done(peer: _Peer, call_id: int, task: asyncio.Task[None]) -> None:
    """Done callback of an inbound call's task: free its slot, or its place among the cancelled
    ones still finishing (the caller's CANCEL freed its slot already). A task cancelled before it
    ever ran is only seen here: its coroutine's own cleanup never runs."""
    if peer.inbound.get(call_id) is task:
        del peer.inbound[call_id]
    peer.cancelling.discard(task)


def _encode_error(ser: Serializer, target: str, method: str, exc: Exception) -> SerializationError:
    return SerializationError(f"cannot encode the payload of {target}.{method} with serializer {ser.name!r}: {exc}")


def _uncancel(task: asyncio.Task[Any]) -> int:
    """Withdraw one cancellation request of ``task``; the requests left (0 on Python 3.10)."""
    uncancel = getattr(task, "uncancel", None)
    return int(uncancel()) if uncancel is not None else 0


def _is_async_callable(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Node:
    """A node: ``await start()``, ``register()`` methods, ``await connect()`` to peers, then
    ``await call()`` / ``notify()`` / ``broadcast()``. Use ``async with node:`` to start and stop.

    ``config`` defaults to an in-process (``memory``) node. ``plugins`` are extra plugin objects
    (modules or instances with ``node_comm.hookimpl`` hooks) registered beside the installed ones.
    The ``node_id`` argument names the node; ``config.node_id`` is used only when it is absent.
    """

    def __init__(
        self,
        node_id: str | None = None,
        config: NodeConfig | None = None,
        *,
        plugins: Iterable[object] = (),
    ) -> None:
        if node_id is None and config is not None:
            node_id = config.node_id
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"node_id must be a non-empty string, got {node_id!r}")
        if config is None:
            config = NodeConfig(node_id=node_id)
        elif not isinstance(config, NodeConfig):
            raise ConfigError(f"config must be a node_comm.NodeConfig, got {type(config).__name__}")
        self._node_id = node_id
        self.config = config
        parts = assemble(config, plugins)
        self._registries: Registries = parts.registries
        self._serializer_registry: SerializerRegistry = parts.serializers
        self._interceptor_chain: InterceptorChain = parts.interceptors
        self.transport: Transport = parts.transport
        self._methods: dict[str, _Method] = {}
        self._pending: dict[int, _Pending] = {}
        self._peers: dict[str, _Peer] = {}
        self._events = EventEmitter()
        self._ids = itertools.count(1)
        self._started = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: DeadlineTimers | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._codec: ThreadPoolExecutor | None = None  # large payloads' (de)serialization; see _offload
        # Lines a peer can cause go through _rlog (rate-limited), what the peer supplied as %r.
        self._rlog = RateLimitedLog(log)
        self._register_framework_methods()

    # ------------------------------------------------------------------ construction helpers
    def _register_framework_methods(self) -> None:
        async def heartbeat(payload: Any, ctx: CallContext) -> dict[str, str]:
            return {"status": "alive", "node_id": self._node_id}

        self._methods["_heartbeat"] = _Method("_heartbeat", heartbeat, "json", True)

    # ------------------------------------------------------------------ properties
    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._node_id

    @property
    def address(self) -> str | None:
        """Where other nodes can reach this one (``None`` in memory mode or when dial-only)."""
        return self.transport.address

    @property
    def is_running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._started

    @property
    def connected_nodes(self) -> list[str]:
        """Ids of the nodes connected now."""
        return list(self._peers)

    @property
    def peers(self) -> list[str]:
        """Alias of :attr:`connected_nodes`."""
        return list(self._peers)

    def is_connected(self, node_id: str) -> bool:
        """Whether ``node_id`` is connected now."""
        return node_id in self._peers

    @property
    def methods(self) -> list[str]:
        """Names of the methods this node serves (framework ones start with ``_``)."""
        return sorted(self._methods)

    @property
    def serializers(self) -> SerializerRegistry:
        """This node's serializers; ``node.serializers.register(s)`` adds one."""
        return self._serializer_registry

    @property
    def interceptors(self) -> InterceptorChain:
        """This node's interceptor chain; ``node.interceptors.add(i)`` appends one."""
        return self._interceptor_chain

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        return f"<Node {self._node_id!r} {self.config.transport.mode} {state} peers={len(self._peers)}>"

    # ------------------------------------------------------------------ registration
    def register(
        self,
        name: str,
        handler: Handler,
        options: MethodOptions | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Serve ``handler`` as method ``name``.

        ``handler(payload, ctx)`` is ``async def`` or a plain ``def`` (run in a thread, off the
        event loop). ``options.serializer`` is the only serializer the method accepts (default json).
        Registering a name twice is an error unless ``replace=True``.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"method name must be a non-empty string, got {name!r}")
        if name.startswith("_"):
            raise ConfigError(f"method name {name!r} is reserved: names starting with '_' are the framework's")
        if not callable(handler):
            raise ConfigError(f"handler for {name!r} must be callable, got {type(handler).__name__}")
        options = options or MethodOptions()
        if not isinstance(options, MethodOptions):
            raise ConfigError(f"options for {name!r} must be a MethodOptions, got {type(options).__name__}")
        ser = self._serializer_registry.get(options.serializer)  # unknown serializer: ConfigError now
        if name in self._methods and not replace:
            raise ConfigError(f"method {name!r} is already registered; pass replace=True to replace it")
        authenticated_only = options.authenticated_only
        if authenticated_only is None:
            authenticated_only = ser.name == "pickle" or bool(getattr(ser, "requires_authentication", False))
        self._methods[name] = _Method(
            name, handler, options.serializer, _is_async_callable(handler), authenticated_only
        )

    def unregister(self, name: str) -> None:
        """Stop serving method ``name``."""
        if name.startswith("_") or self._methods.pop(name, None) is None:
            raise ConfigError(f"method {name!r} is not registered")

    # ------------------------------------------------------------------ events
    def on(self, event: str, handler: EventHandler) -> Node:
        """Call ``handler`` on ``connect(node_id, address)`` or ``disconnect(node_id, reason)``;
        returns the node so calls chain."""
        self._events.on(event, handler)
        return self

    def off(self, event: str, handler: EventHandler | None = None) -> Node:
        """Remove ``handler`` from ``event``, or every handler of it when ``handler`` is None."""
        self._events.off(event, handler)
        return self

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start serving (bind, listen, register with the transport)."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._timers = DeadlineTimers(self._loop)
        self._stopping = False
        await self.transport.start(self)
        self._started = True
        hb = self.config.heartbeat
        if hb.enabled:
            self._heartbeat_task = self._loop.create_task(self._heartbeat_loop(hb.interval, hb.timeout))

    async def stop(self, grace: float | None = None) -> None:
        """Stop: refuse new calls, let in-flight inbound calls finish within ``grace`` seconds
        (default ``config.shutdown_grace``), then close every connection."""
        if not self._started:
            return
        self._stopping = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        grace = self.config.shutdown_grace if grace is None else grace
        me = asyncio.current_task()  # a handler may stop its own node: never wait for or cancel it
        inflight = [t for p in self._peers.values() for t in p.inbound.values() if t is not me]
        if inflight and grace > 0:
            await asyncio.wait(inflight, timeout=grace)
        for task in inflight:
            task.cancel()
        try:
            await self.transport.stop(f"node {self._node_id!r} stopped")
        finally:
            self._started = False
            for peer_id in list(self._peers):
                self.peer_disconnected(peer_id, "local node stopped")
            for call_id in list(self._pending):
                pend = self._pending.pop(call_id)
                self._fail(pend, NodeNotStartedError(f"node {self._node_id!r} stopped"))
            if self._timers is not None:
                self._timers.close()
            for task in list(self._background):
                if task is not me:
                    task.cancel()
            if self._codec is not None:
                # Work still queued belongs to calls still waiting for it (a cancelled wait
                # cancels its queued work): let it finish rather than fail them with CancelledError.
                self._codec.shutdown(wait=False)
                self._codec = None
            await self._events.drain(timeout=max(grace, 1.0))

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_running(self) -> None:
        if not self._started or self._stopping:
            raise NodeNotStartedError(
                f"node {self._node_id!r} is not running; call `await node.start()` "
                "(or use `async with node:`) first"
            )

    # ------------------------------------------------------------------ outbound
    async def connect(self, node_id: str, address: str | None = None, *, timeout: float | None = None) -> None:
        """Connect to ``node_id`` (at ``address`` for network transports). After it, both nodes
        list each other as connected and either may call the other. A no-op when connected."""
        self._check_running()
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"node_id must be a non-empty string, got {node_id!r}")
        if node_id == self._node_id:
            raise ConfigError(f"node {node_id!r} cannot connect to itself")
        if node_id in self._peers:
            return
        await self.transport.connect(
            node_id, address, self.config.connect_timeout if timeout is None else timeout
        )

    async def disconnect(self, node_id: str, reason: str = "disconnected by local node") -> None:
        """Close the connection to ``node_id``; its pending calls fail at once."""
        if node_id not in self._peers:
            return
        await self.transport.disconnect(node_id, reason)
        self.peer_disconnected(node_id, reason)

    def _encode(self, serializer: str | None, payload: Any, target: str, method: str) -> tuple[Serializer, bytes]:
        """Encode a small payload inline (callers check ``looks_large`` first)."""
        ser = self._serializer_registry.get(serializer or "json")
        try:
            return ser, ser.serialize(payload)
        except Exception as exc:
            raise _encode_error(ser, target, method, exc) from exc

    async def _encode_in_thread(
        self, serializer: str | None, payload: Any, target: str, method: str
    ) -> tuple[Serializer, bytes]:
        """Encode a large payload in the codec pool, off the event loop."""
        ser = self._serializer_registry.get(serializer or "json")
        try:
            return ser, await self._in_thread(ser.serialize, payload)
        except Exception as exc:
            raise _encode_error(ser, target, method, exc) from exc

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in the node's codec pool. Cancelling the awaiting task drops the
        result; work not yet started never runs, work running finishes and is discarded."""
        loop = self._loop
        assert loop is not None
        pool = self._codec
        if pool is None:
            pool = self._codec = codec_pool(self._node_id)
        return loop.run_in_executor(pool, fn, *args)

    async def call(
        self,
        target: str,
        method: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        serializer: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Any:
        """Call ``method`` on node ``target`` and return the handler's result.

        ``timeout`` defaults to ``config.default_timeout``; inside a handler the call also gets no
        more than the remaining deadline of the call being served. Raises
        :class:`NodeNotConnectedError`, :class:`CallTimeoutError`, :class:`RemoteExecutionError`
        (with ``.code``), :class:`SerializationError`, or :class:`PayloadTooLargeError` for a
        result past this node's ``decode_limits``. Payloads of ``offload_threshold`` bytes or more
        are encoded and decoded in a worker thread.
        """
        self._check_running()
        if target not in self._peers:
            raise NodeNotConnectedError(target)
        if looks_large(payload, self.config.offload_threshold):
            ser, data = await self._encode_in_thread(serializer, payload, target, method)
        else:
            ser, data = self._encode(serializer, payload, target, method)
        return await self._call_encoded(target, method, ser, data, timeout, metadata)

    async def _call_encoded(
        self,
        target: str,
        method: str,
        ser: Serializer,
        data: bytes,
        timeout: float | None,
        metadata: dict[str, str] | None,
    ) -> Any:
        """``call()`` once the payload is encoded (``broadcast`` encodes once for every target)."""
        budget = self.config.default_timeout if timeout is None else timeout
        inherited = current_deadline.get()
        remaining: float | None = budget
        if inherited is not None:
            left = inherited - time.monotonic()
            remaining = left if remaining is None else min(remaining, left)
        if remaining is not None and remaining <= 0:
            raise CallTimeoutError(target, method, budget if budget is not None else 0.0)
        msg = Message(next(self._ids), _REQUEST, self._node_id, target, method, data, ser.name,
                      dict(metadata) if metadata else {}, None, remaining)
        if self._interceptor_chain:
            peer = self._peers.get(target)
            ctx = CallContext(self, self._node_id, target, method, "outbound", msg.metadata,
                              None if remaining is None else time.monotonic() + remaining, msg.id, False,
                              None if peer is None else peer.identity)
            terminal = functools.partial(self._send_request_within, ctx.deadline)
            reply = await self._interceptor_chain.outbound(msg, ctx, terminal)
            if reply is None:
                raise NodeCommError(f"an interceptor swallowed the reply of {target}.{method}")
        else:
            reply = await self._send_request(msg)
        if reply.type is _ERROR:
            err = reply.error or ErrorInfo(ErrorCode.INTERNAL.value, "remote error without details")
            raise RemoteExecutionError(err.message, err.code, err.traceback, target=target, method=method)
        if reply.serializer != ser.name:
            raise SerializationError(
                f"{target}.{method} answered in serializer {reply.serializer!r}, expected {ser.name!r}; "
                "refusing to decode"
            )
        data = reply.payload
        try:
            if len(data) >= self.config.offload_threshold:
                return await self._in_thread(ser.deserialize_bounded, data, self.config.decode_limits)
            return ser.deserialize_bounded(data, self.config.decode_limits)
        except PayloadTooLargeError as exc:
            raise PayloadTooLargeError(
                f"the result of {target}.{method} was refused undecoded: {exc.message}"
            ) from None
        except Exception as exc:
            raise SerializationError(
                f"cannot decode the result of {target}.{method} with serializer {ser.name!r}: {exc}"
            ) from exc

    async def _send_request_within(self, deadline: float | None, msg: Message) -> Message:
        """Terminal of the outbound chain: the time interceptors took counts against the call's
        deadline, and the deadline sent is what is left of it."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeoutError(msg.target, msg.method, msg.deadline)
            msg.deadline = left
        return await self._send_request(msg)

    async def _send_request(self, msg: Message) -> Message:
        """Terminal of the outbound chain: send, then wait for the reply, the deadline or loss."""
        if msg.target not in self._peers:
            raise NodeNotConnectedError(msg.target)
        loop = self._loop
        timers = self._timers
        assert loop is not None and timers is not None
        fut: asyncio.Future[Message] = loop.create_future()
        pend = _Pending(fut, msg.target, msg.method, msg.deadline)
        call_id = msg.id
        if msg.deadline is not None:
            pend.timer = timers.call_at(loop.time() + msg.deadline, self._expire, call_id)
        self._pending[call_id] = pend
        try:
            task = pend.sending = asyncio.current_task()
            try:
                await self.transport.send(msg)
            except asyncio.CancelledError:
                # Stopped by the deadline or an early reply (_stop_sending): the unsent rest is
                # abandoned and the outcome is in ``fut``. Any other cancellation goes on.
                if not pend.stopped or task is None or _uncancel(task) > 0:
                    raise
            finally:
                pend.sending = None
            return await fut
        except asyncio.CancelledError:
            if call_id in self._pending and msg.target in self._peers:
                self._send_cancel(msg.target, call_id)
            raise
        finally:
            done = self._pending.pop(call_id, None)
            if done is not None and done.timer is not None:
                timers.cancel(done.timer)

    def _expire(self, call_id: int) -> None:
        pend = self._pending.pop(call_id, None)
        if pend is None:
            return
        self._fail(pend, CallTimeoutError(pend.target, pend.method, pend.timeout))
        if pend.sending is not None:
            self._stop_sending(pend)
        if pend.target in self._peers:
            self._send_cancel(pend.target, call_id)

    def _stop_sending(self, pend: _Pending) -> None:
        """The call has its outcome while its caller is still inside ``transport.send`` (a peer that
        stopped reading; a large payload refused at its first chunk): stop the send, so the caller
        returns now. Safe for every transport: a caller may be cancelled in ``send`` any time (the
        gRPC link never lets a caller's cancellation reach a half-done stream write, and aborts an
        unfinished chunked transfer so the receiver drops it)."""
        task = pend.sending
        if task is None or pend.stopped or task is asyncio.current_task():
            return
        pend.stopped = True
        task.cancel()

    def _fail(self, pend: _Pending, exc: BaseException) -> None:
        if pend.timer is not None and self._timers is not None:
            self._timers.cancel(pend.timer)
        if not pend.future.done():
            pend.future.set_exception(exc)

    def _send_cancel(self, target: str, call_id: int) -> None:
        self._spawn(self._send_quiet(Message(call_id, _CANCEL, self._node_id, target)))

    async def notify(
        self,
        target: str,
        method: str,
        payload: Any = None,
        *,
        serializer: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Send ``method(payload)`` to ``target`` without waiting for the handler; returns once the
        message is handed to the transport."""
        self._check_running()
        if target not in self._peers:
            raise NodeNotConnectedError(target)
        if looks_large(payload, self.config.offload_threshold):
            ser, data = await self._encode_in_thread(serializer, payload, target, method)
        else:
            ser, data = self._encode(serializer, payload, target, method)
        msg = Message(next(self._ids), _NOTIFY, self._node_id, target, method, data, ser.name,
                      dict(metadata) if metadata else {})
        if self._interceptor_chain:
            peer = self._peers.get(target)
            ctx = CallContext(self, self._node_id, target, method, "outbound", msg.metadata, None,
                              msg.id, True, None if peer is None else peer.identity)
            await self._interceptor_chain.outbound(msg, ctx, self._send_notify)
        else:
            await self.transport.send(msg)

    async def _send_notify(self, msg: Message) -> None:
        await self.transport.send(msg)

    async def broadcast(
        self,
        method: str,
        payload: Any = None,
        exclude: Iterable[str] | None = None,
        timeout: float | None = None,
        *,
        serializer: str | None = None,
    ) -> dict[str, Any]:
        """Call ``method`` on every connected node at once; returns ``{node_id: result or
        exception}``. One node's failure never fails the others. The payload is encoded once; one
        the serializer cannot encode raises :class:`SerializationError` and nothing is sent."""
        self._check_running()
        skip = {exclude} if isinstance(exclude, str) else set(exclude or ())
        targets = [p for p in self._peers if p not in skip]
        if not targets:
            return {}
        if looks_large(payload, self.config.offload_threshold):  # once, not per target
            ser, data = await self._encode_in_thread(serializer, payload, "<broadcast>", method)
        else:
            ser, data = self._encode(serializer, payload, "<broadcast>", method)
        results = await asyncio.gather(
            *(self._call_encoded(t, method, ser, data, timeout, None) for t in targets),
            return_exceptions=True,
        )
        return dict(zip(targets, results, strict=True))

    # ------------------------------------------------------------------ TransportHost
    def peer_connected(self, peer_id: str, address: str | None, *, identity: str | None = None) -> None:
        """Transport callback: a link to ``peer_id`` is up (``identity``: how it was authenticated)."""
        if peer_id in self._peers:
            self._peers[peer_id].address = address
            self._peers[peer_id].identity = identity
            return
        self._peers[peer_id] = _Peer(address, time.monotonic(), identity=identity)
        self._rlog.debug("connect", "%s: connected to %r (%r)", self._node_id, peer_id, address)
        self._events.emit("connect", peer_id, address)

    def peer_disconnected(self, peer_id: str, reason: str) -> None:
        """Transport callback: the link to ``peer_id`` is gone; fail its pending calls now."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        self._rlog.debug("disconnect", "%s: disconnected from %r: %r", self._node_id, peer_id, reason)
        for call_id, pend in list(self._pending.items()):
            if pend.target == peer_id:
                del self._pending[call_id]
                self._fail(pend, ConnectionLostError(peer_id, reason))
        me = asyncio.current_task()
        for task in list(peer.inbound.values()):
            if task is not me:
                task.cancel()
        if peer.resume is not None:  # a transport waiting to read from it: read on (and find it gone)
            if not peer.resume.done():
                peer.resume.set_result(None)
            peer.resume = None
        self._events.emit("disconnect", peer_id, reason)

    def deliver(self, message: Message) -> None:
        """Transport callback: ``message`` arrived from ``message.source``."""
        peer = self._peers.get(message.source)
        if peer is None:
            self._rlog.debug("unconnected", "%s: dropped %s from unconnected %r", self._node_id,
                             message.type, message.source)
            return
        peer.last_seen = time.monotonic()  # liveness counts every message, not only heartbeats
        mtype = message.type
        if mtype is _RESPONSE or mtype is _ERROR:
            # The caller (_send_request) removes the entry and its timer; a late reply to a call
            # that timed out or was cancelled finds nothing.
            pend = self._pending.get(message.id)
            if pend is not None and pend.target == message.source and not pend.future.done():
                pend.future.set_result(message)
                if pend.sending is not None:  # answered before its request was all sent
                    self._stop_sending(pend)
        elif mtype is _REQUEST:
            self._start_inbound(peer, message)
        elif mtype is _NOTIFY:
            self._start_notify(peer, message)
        elif mtype is _CANCEL:
            # The slot is the caller's again at once (its next call must not find it taken); the
            # task counts among those finishing their cancellation until it is done.
            task = peer.inbound.pop(message.id, None)
            if task is not None:
                peer.cancelling.add(task)
                task.cancel()
        elif mtype is _HEARTBEAT:
            if not peer.acking:  # at most one ack on its way per peer, never a task per frame
                peer.acking = True
                self._spawn(self._send_flagged(
                    peer, "acking", Message(message.id, _HEARTBEAT_ACK, self._node_id, message.source)
                ))
        elif mtype is _HEARTBEAT_ACK:
            pass  # liveness only: recorded above
        else:
            self._rlog.warning(("unknown-type", message.source), "%s: dropped message of unknown type %r from %r",
                               self._node_id, mtype, message.source)

    # ------------------------------------------------------------------ inbound
    def _start_inbound(self, peer: _Peer, msg: Message) -> None:
        if msg.type is _REQUEST:
            if self._stopping or not self._started:
                self._reply_error(msg, ErrorCode.UNAVAILABLE, f"node {self._node_id!r} is shutting down")
                return
            limit = self.config.max_concurrent_calls_per_peer
            # Cancelled tasks still finishing are bounded too (an honest caller has at most
            # ``limit`` of them: its calls in flight), or REQUEST+CANCEL pairs could grow tasks.
            if len(peer.inbound) >= limit or msg.id in peer.inbound or len(peer.cancelling) > limit:
                self._reply_error(
                    msg,
                    ErrorCode.RESOURCE_EXHAUSTED,
                    f"node {self._node_id!r} is serving {len(peer.inbound)} calls from {msg.source!r} "
                    f"(max_concurrent_calls_per_peer={self.config.max_concurrent_calls_per_peer})",
                )
                return
        loop = self._loop
        assert loop is not None
        deadline = None if msg.deadline is None else time.monotonic() + msg.deadline
        task = loop.create_task(self._serve(peer, msg, deadline))
        # No deadline timer here: the caller sends CANCEL when its deadline passes, and a lost
        # link cancels every inbound task of that peer. The entry leaves the table as the call ends
        # (in _serve) or, for a task cancelled before it ever ran, by its done callback.
        peer.inbound[msg.id] = task
        task.add_done_callback(functools.partial(_inbound_done, peer, msg.id))

    def _start_notify(self, peer: _Peer, msg: Message) -> None:
        """Run a notify handler, or hold the notify while the peer has
        ``max_concurrent_notifies_per_peer`` running (the transport stops reading that peer
        meanwhile: see :meth:`reading_paused`; only what it had read already is held)."""
        if peer.notifies >= self.config.max_concurrent_notifies_per_peer:
            peer.held.append(msg)
            return
        self._run_notify(peer, msg)

    def _run_notify(self, peer: _Peer, msg: Message) -> None:
        loop = self._loop
        assert loop is not None
        deadline = None if msg.deadline is None else time.monotonic() + msg.deadline
        task = loop.create_task(self._serve(peer, msg, deadline))
        peer.notifies += 1
        self._background.add(task)
        task.add_done_callback(functools.partial(self._notify_done, peer))

    def _notify_done(self, peer: _Peer, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        peer.notifies -= 1
        if peer.held:
            if self._started:
                self._run_notify(peer, peer.held.popleft())
                return
            log.debug("%s: %d notifies from %r not run: the node stopped", self._node_id, len(peer.held),
                      peer.held[0].source)
            peer.held.clear()
        resume = peer.resume
        if resume is not None and peer.notifies < self.config.max_concurrent_notifies_per_peer:
            peer.resume = None
            if not resume.done():
                resume.set_result(None)

    def reading_paused(self, peer_id: str) -> asyncio.Future[None] | None:
        """Transport callback (flow control): ``None`` while the node takes more messages from
        ``peer_id``; else a future done when it does again (its notify handlers are at
        ``max_concurrent_notifies_per_peer``). See :class:`~node_comm.transport.TransportHost`."""
        peer = self._peers.get(peer_id)
        if peer is None or (peer.notifies < self.config.max_concurrent_notifies_per_peer and not peer.held):
            return None
        resume = peer.resume
        if resume is None:
            loop = self._loop
            assert loop is not None
            resume = peer.resume = loop.create_future()
        return asyncio.shield(resume)  # a waiter cancelled must not cancel it for the others

    async def _serve(self, peer: _Peer, msg: Message, deadline: float | None) -> None:
        try:
            await self._serve_call(msg, deadline, peer.identity)
        finally:
            # Free the slot as soon as the reply is sent (the done callback comes a loop turn later).
            if msg.type is _REQUEST and peer.inbound.get(msg.id) is asyncio.current_task():
                del peer.inbound[msg.id]

    async def _serve_call(self, msg: Message, deadline: float | None, identity: str | None) -> None:
        current_deadline.set(deadline)
        ctx = CallContext(self, msg.source, self._node_id, msg.method, "inbound", msg.metadata, deadline,
                          msg.id, msg.type is _NOTIFY, identity)
        try:
            if self._interceptor_chain:
                reply = await self._interceptor_chain.inbound(msg, ctx, functools.partial(self._dispatch, ctx))
            else:
                reply = await self._dispatch(ctx, msg)
        except asyncio.CancelledError:
            if deadline is not None and time.monotonic() >= deadline and msg.type is _REQUEST:
                self._reply_error(msg, ErrorCode.DEADLINE_EXCEEDED,
                                  f"{self._node_id}.{msg.method} exceeded its deadline")
            return
        except NodeCommError as exc:
            reply = self._error_message(msg, exc.code, exc.message)
        except Exception as exc:
            self._rlog.exception(("interceptor", msg.source), "%s: interceptor failed on %r from %r",
                                 self._node_id, msg.method, msg.source)
            reply = self._error_message(msg, ErrorCode.INTERNAL, f"interceptor failed: {exc!r}",
                                        traceback.format_exc())
        if reply is None:
            return
        if msg.type is _REQUEST:
            await self._send_quiet(reply)
        elif reply.error is not None:  # a notify has nobody to tell but the log
            self._rlog.warning(("notify", msg.source), "%s: notify %r from %r failed [%s]: %r",
                               self._node_id, msg.method, msg.source, reply.error.code, reply.error.message)

    async def _dispatch(self, ctx: CallContext, msg: Message) -> Message | None:
        """Terminal of the inbound chain: check, decode, run the handler, encode its result."""
        method = self._methods.get(msg.method)
        if method is None:
            text = f"node {self._node_id!r} has no method {msg.method!r}"
            if self.config.debug or ctx.authenticated:  # never show an unknown caller what is served
                public = [m for m in self._methods if not m.startswith("_")]
                text += f"; registered: {', '.join(sorted(public)) or 'none'}"
            raise CallRejectedError(ErrorCode.METHOD_NOT_FOUND, text)
        if method.authenticated_only and not ctx.authenticated:
            raise CallRejectedError(
                ErrorCode.PERMISSION_DENIED,
                f"method {msg.method!r} of node {self._node_id!r} accepts calls only from authenticated "
                f"peers (it uses serializer {method.serializer!r}), and {msg.source!r} is not authenticated; "
                "configure transport.grpc.token (the same secret on both nodes) or mutual TLS",
            )
        if msg.serializer != method.serializer:
            raise CallRejectedError(
                ErrorCode.SERIALIZER_MISMATCH,
                f"method {msg.method!r} accepts serializer {method.serializer!r} only, the request used "
                f"{msg.serializer!r}; call it with serializer={method.serializer!r}",
            )
        try:
            ser = self._serializer_registry.get(method.serializer)
        except ConfigError as exc:
            raise CallRejectedError(ErrorCode.INTERNAL, str(exc)) from None
        data = msg.payload
        try:
            if len(data) >= self.config.offload_threshold:
                payload = await self._in_thread(ser.deserialize_bounded, data, self.config.decode_limits)
            else:
                payload = ser.deserialize_bounded(data, self.config.decode_limits)
        except PayloadTooLargeError as exc:
            raise CallRejectedError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"node {self._node_id!r} refused the payload of {msg.method!r} undecoded: {exc.message}",
            ) from None
        except Exception as exc:
            raise CallRejectedError(
                ErrorCode.SERIALIZATION_ERROR,
                f"cannot decode the payload of {msg.method!r} with serializer {ser.name!r}: {exc}",
            ) from None
        try:
            if method.is_async:
                result = await method.handler(payload, ctx)
            else:
                loop = self._loop
                assert loop is not None
                run: Callable[..., Any] = contextvars.copy_context().run
                result = await loop.run_in_executor(None, run, method.handler, payload, ctx)
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            if _task_is_cancelled():
                raise
            # The handler raised CancelledError without being cancelled (it awaited something
            # that was): answer, or the caller would wait for its whole timeout.
            return self._error_message(
                msg, ErrorCode.HANDLER_ERROR,
                "CancelledError: the handler raised CancelledError without being cancelled", self._tb(),
            )
        except CallRejectedError as exc:
            return self._error_message(msg, exc.code, exc.message, self._tb())
        except Exception as exc:
            return self._error_message(msg, ErrorCode.HANDLER_ERROR, f"{type(exc).__name__}: {exc}", self._tb())
        if msg.type is _NOTIFY:
            return None
        try:
            if looks_large(result, self.config.offload_threshold):
                data = await self._in_thread(ser.serialize, result)
            else:
                data = ser.serialize(result)
        except Exception as exc:
            return self._error_message(
                msg, ErrorCode.SERIALIZATION_ERROR,
                f"handler of {msg.method!r} returned a value serializer {ser.name!r} cannot encode: {exc}",
                self._tb(),
            )
        return Message(msg.id, _RESPONSE, self._node_id, msg.source, msg.method, data, ser.name)

    def _tb(self) -> str | None:
        return traceback.format_exc() if self.config.debug else None

    def _error_message(self, msg: Message, code: ErrorCode | str, text: str, tb: str | None = None) -> Message:
        return Message(msg.id, _ERROR, self._node_id, msg.source, msg.method,
                       error=ErrorInfo(str(code), text, tb if self.config.debug else None))

    def _reply_error(self, msg: Message, code: ErrorCode, text: str) -> None:
        if msg.type is _REQUEST:
            self._spawn(self._send_quiet(self._error_message(msg, code, text)))

    async def _send_flagged(self, peer: _Peer, flag: str, msg: Message) -> None:
        """Send a heartbeat or its ack, then clear ``peer.<flag>`` (one of each at a time per peer)."""
        try:
            await self._send_quiet(msg)
        finally:
            setattr(peer, flag, False)

    async def _send_quiet(self, msg: Message) -> None:
        """Send a reply, cancel or heartbeat; a vanished peer is not an error for us."""
        try:
            await self.transport.send(msg)
        except NodeCommError as exc:
            self._rlog.debug(("send", msg.target), "%s: could not send %s to %r: %r", self._node_id,
                             msg.type.name, msg.target, str(exc))
        except Exception:
            self._rlog.exception(("send", msg.target), "%s: transport failed to send %s to %r",
                                 self._node_id, msg.type.name, msg.target)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            if inspect.iscoroutine(coro):
                coro.close()
            return
        task = asyncio.ensure_future(coro, loop=loop)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ heartbeat
    async def _heartbeat_loop(self, interval: float, timeout: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for peer_id, peer in list(self._peers.items()):
                if peer.resume is not None:  # this node stopped reading it: its silence is ours
                    peer.last_seen = now
                if now - peer.last_seen > timeout:
                    reason = f"{HEARTBEAT_TIMEOUT_REASON}: no message for {timeout:g}s"
                    try:
                        if disconnect_accepts_may_return(self.transport):
                            await self.transport.disconnect(peer_id, reason, may_return=True)
                        else:  # a transport written before may_return
                            await self.transport.disconnect(peer_id, reason)
                    except Exception:
                        self._rlog.exception(("drop", peer_id), "%s: transport failed to drop %r",
                                             self._node_id, peer_id)
                    self.peer_disconnected(peer_id, reason)
                elif not peer.pinging:
                    peer.pinging = True
                    self._spawn(self._send_flagged(peer, "pinging", Message(0, _HEARTBEAT, self._node_id, peer_id)))
