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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._timers import DeadlineTimers, Entry
from .config import InterceptorConfig, MethodOptions, NodeConfig
from .config_loader import build_interceptor, options_for_transport
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
    RemoteExecutionError,
    SerializationError,
)
from .interceptor import Interceptor, InterceptorChain
from .message import ErrorInfo, Message, MessageType
from .plugins import Registries, discover
from .serializer import Serializer, SerializerRegistry
from .transport import HEARTBEAT_TIMEOUT_REASON, Transport

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


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Message]
    target: str
    method: str
    timeout: float | None
    timer: Entry | None = None


@dataclass(slots=True)
class _Peer:
    address: str | None
    last_seen: float
    inbound: dict[int, asyncio.Task[None]] = field(default_factory=dict)


def _task_is_cancelled() -> bool:
    """Whether the current task is being cancelled (always assumed on Python 3.10, which cannot
    tell a cancellation from a CancelledError raised by the code it runs)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


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
        self._registries: Registries = discover(config.plugins, plugins)
        self._serializer_registry = SerializerRegistry(
            {p.name: p.obj for p in self._registries.serializers.items()}
        )
        self._interceptor_chain = InterceptorChain(
            [self._build_interceptor(i, n) for n, i in enumerate(config.interceptors)]
        )
        self.transport: Transport = self._build_transport()
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
        self._register_framework_methods()

    # ------------------------------------------------------------------ construction helpers
    def _build_transport(self) -> Transport:
        mode = self.config.transport.mode
        factory = self._registries.transports.get(mode)
        options = options_for_transport(factory, self.config.transport.section(mode), f"transport.{mode}")
        transport = factory(options)
        if not isinstance(transport, Transport):
            raise ConfigError(
                f"transport {mode!r} factory returned {type(transport).__name__}, not a node_comm Transport"
            )
        return transport

    def _build_interceptor(self, spec: InterceptorConfig, index: int) -> Interceptor:
        interceptor = build_interceptor(self._registries, spec, index)
        if not isinstance(interceptor, Interceptor):
            raise ConfigError(
                f"interceptor {spec.name!r} factory returned {type(interceptor).__name__}, "
                "not a node_comm.Interceptor"
            )
        return interceptor

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
        self._serializer_registry.get(options.serializer)  # unknown serializer: ConfigError now
        if name in self._methods and not replace:
            raise ConfigError(f"method {name!r} is already registered; pass replace=True to replace it")
        self._methods[name] = _Method(name, handler, options.serializer, _is_async_callable(handler))

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
        ser = self._serializer_registry.get(serializer or "json")
        try:
            return ser, ser.serialize(payload)
        except Exception as exc:
            raise SerializationError(
                f"cannot encode the payload of {target}.{method} with serializer {ser.name!r}: {exc}"
            ) from exc

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
        (with ``.code``) or :class:`SerializationError`.
        """
        self._check_running()
        if target not in self._peers:
            raise NodeNotConnectedError(target)
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
            ctx = CallContext(self, self._node_id, target, method, "outbound", msg.metadata,
                              None if remaining is None else time.monotonic() + remaining, msg.id)
            terminal = functools.partial(self._send_request_within, ctx.deadline)
            reply = await self._interceptor_chain.outbound(msg, ctx, terminal)
            if reply is None:
                raise NodeCommError(f"an interceptor swallowed the reply of {target}.{method}")
        else:
            reply = await self._send_request(msg)
        return self._decode_reply(reply, target, method, ser)

    def _decode_reply(self, reply: Message, target: str, method: str, ser: Serializer) -> Any:
        """The result a reply carries, or the error it stands for."""
        if reply.type is _ERROR:
            err = reply.error or ErrorInfo(ErrorCode.INTERNAL.value, "remote error without details")
            raise RemoteExecutionError(err.message, err.code, err.traceback, target=target, method=method)
        if reply.serializer != ser.name:
            raise SerializationError(
                f"{target}.{method} answered in serializer {reply.serializer!r}, expected {ser.name!r}; "
                "refusing to decode"
            )
        try:
            return ser.deserialize(reply.payload)
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
            await self.transport.send(msg)
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
        if pend.target in self._peers:
            self._send_cancel(pend.target, call_id)

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
        ser, data = self._encode(serializer, payload, target, method)
        msg = Message(next(self._ids), _NOTIFY, self._node_id, target, method, data, ser.name,
                      dict(metadata) if metadata else {})
        if self._interceptor_chain:
            ctx = CallContext(self, self._node_id, target, method, "outbound", msg.metadata, None,
                              msg.id, True)
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
        ser, data = self._encode(serializer, payload, "<broadcast>", method)  # once, not per target
        if self._interceptor_chain or len(targets) < 2:  # interceptors see each call on its own
            results = await asyncio.gather(
                *(self._call_encoded(t, method, ser, data, timeout, None) for t in targets),
                return_exceptions=True,
            )
        else:
            results = await self._broadcast_encoded(targets, method, ser, data, timeout)
        return dict(zip(targets, results, strict=True))

    async def _broadcast_encoded(
        self, targets: list[str], method: str, ser: Serializer, data: bytes, timeout: float | None
    ) -> list[Any]:
        """``broadcast()`` without interceptors: one ``transport.send_many`` hands the request to
        every target (a broker transport publishes the payload once); each reply, error or timeout
        is then that target's own, as with ``call()``."""
        budget = self.config.default_timeout if timeout is None else timeout
        inherited = current_deadline.get()
        remaining: float | None = budget
        if inherited is not None:
            left = inherited - time.monotonic()
            remaining = left if remaining is None else min(remaining, left)
        if remaining is not None and remaining <= 0:
            return [CallTimeoutError(t, method, budget if budget is not None else 0.0) for t in targets]
        loop, timers = self._loop, self._timers
        assert loop is not None and timers is not None
        msgs: list[Message] = []
        futures: list[asyncio.Future[Message]] = []
        for target in targets:
            msg = Message(next(self._ids), _REQUEST, self._node_id, target, method, data, ser.name, {}, None,
                          remaining)
            pend = _Pending(loop.create_future(), target, method, remaining)
            if remaining is not None:
                pend.timer = timers.call_at(loop.time() + remaining, self._expire, msg.id)
            self._pending[msg.id] = pend
            msgs.append(msg)
            futures.append(pend.future)
        try:
            for msg, err in zip(msgs, await self.transport.send_many(msgs), strict=True):
                failed = self._pending.pop(msg.id, None) if err is not None else None
                if failed is not None and err is not None:
                    self._fail(failed, err)
            replies = await asyncio.gather(*futures, return_exceptions=True)
        except asyncio.CancelledError:
            for msg in msgs:
                if msg.id in self._pending and msg.target in self._peers:
                    self._send_cancel(msg.target, msg.id)
            raise
        finally:
            for msg in msgs:
                done = self._pending.pop(msg.id, None)
                if done is not None and done.timer is not None:
                    timers.cancel(done.timer)
        results: list[Any] = []
        for target, reply in zip(targets, replies, strict=True):
            if isinstance(reply, BaseException):
                results.append(reply)
                continue
            try:
                results.append(self._decode_reply(reply, target, method, ser))
            except NodeCommError as exc:
                results.append(exc)
        return results

    # ------------------------------------------------------------------ TransportHost
    def peer_connected(self, peer_id: str, address: str | None) -> None:
        """Transport callback: a link to ``peer_id`` is up."""
        if peer_id in self._peers:
            self._peers[peer_id].address = address
            return
        self._peers[peer_id] = _Peer(address, time.monotonic())
        log.debug("%s: connected to %s (%s)", self._node_id, peer_id, address)
        self._events.emit("connect", peer_id, address)

    def peer_disconnected(self, peer_id: str, reason: str) -> None:
        """Transport callback: the link to ``peer_id`` is gone; fail its pending calls now."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        log.debug("%s: disconnected from %s: %s", self._node_id, peer_id, reason)
        for call_id, pend in list(self._pending.items()):
            if pend.target == peer_id:
                del self._pending[call_id]
                self._fail(pend, ConnectionLostError(peer_id, reason))
        me = asyncio.current_task()
        for task in list(peer.inbound.values()):
            if task is not me:
                task.cancel()
        self._events.emit("disconnect", peer_id, reason)

    def deliver(self, message: Message) -> None:
        """Transport callback: ``message`` arrived from ``message.source``."""
        peer = self._peers.get(message.source)
        if peer is None:
            log.debug("%s: dropped %s from unconnected %r", self._node_id, message.type, message.source)
            return
        mtype = message.type
        if mtype is _RESPONSE or mtype is _ERROR:
            # The caller (_send_request) removes the entry and its timer; a late reply to a call
            # that timed out or was cancelled finds nothing.
            pend = self._pending.get(message.id)
            if pend is not None and pend.target == message.source and not pend.future.done():
                pend.future.set_result(message)
        elif mtype is _REQUEST or mtype is _NOTIFY:
            self._start_inbound(peer, message)
        elif mtype is _CANCEL:
            task = peer.inbound.get(message.id)
            if task is not None:
                task.cancel()
        elif mtype is _HEARTBEAT:
            peer.last_seen = time.monotonic()
            self._spawn(self._send_quiet(Message(message.id, _HEARTBEAT_ACK, self._node_id, message.source)))
        elif mtype is _HEARTBEAT_ACK:
            peer.last_seen = time.monotonic()
        else:
            log.warning("%s: dropped message of unknown type %r from %s", self._node_id, mtype, message.source)

    # ------------------------------------------------------------------ inbound
    def _start_inbound(self, peer: _Peer, msg: Message) -> None:
        if msg.type is _REQUEST:
            if self._stopping or not self._started:
                self._reply_error(msg, ErrorCode.UNAVAILABLE, f"node {self._node_id!r} is shutting down")
                return
            if len(peer.inbound) >= self.config.max_concurrent_calls_per_peer or msg.id in peer.inbound:
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
        if msg.type is _REQUEST:
            # Removed again by _serve itself. No deadline timer here: the caller sends CANCEL when
            # its deadline passes, and a lost link cancels every inbound task of that peer.
            peer.inbound[msg.id] = task
        else:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _serve(self, peer: _Peer, msg: Message, deadline: float | None) -> None:
        try:
            await self._serve_call(msg, deadline)
        finally:
            if msg.type is _REQUEST:
                peer.inbound.pop(msg.id, None)

    async def _serve_call(self, msg: Message, deadline: float | None) -> None:
        current_deadline.set(deadline)
        ctx = CallContext(self, msg.source, self._node_id, msg.method, "inbound", msg.metadata, deadline,
                          msg.id, msg.type is _NOTIFY)
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
            log.exception("%s: interceptor failed on %s", self._node_id, msg.method)
            reply = self._error_message(msg, ErrorCode.INTERNAL, f"interceptor failed: {exc!r}",
                                        traceback.format_exc())
        if reply is None:
            return
        if msg.type is _REQUEST:
            await self._send_quiet(reply)
        elif reply.error is not None:  # a notify has nobody to tell but the log
            log.warning("%s: notify %s from %s failed [%s]: %s", self._node_id, msg.method, msg.source,
                        reply.error.code, reply.error.message)

    async def _dispatch(self, ctx: CallContext, msg: Message) -> Message | None:
        """Terminal of the inbound chain: check, decode, run the handler, encode its result."""
        method = self._methods.get(msg.method)
        if method is None:
            public = [m for m in self._methods if not m.startswith("_")]
            raise CallRejectedError(
                ErrorCode.METHOD_NOT_FOUND,
                f"node {self._node_id!r} has no method {msg.method!r}; registered: "
                f"{', '.join(sorted(public)) or 'none'}",
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
        try:
            payload = ser.deserialize(msg.payload)
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

    async def _send_quiet(self, msg: Message) -> None:
        """Send a reply, cancel or heartbeat; a vanished peer is not an error for us."""
        try:
            await self.transport.send(msg)
        except NodeCommError as exc:
            log.debug("%s: could not send %s to %s: %s", self._node_id, msg.type.name, msg.target, exc)
        except Exception:
            log.exception("%s: transport failed to send %s to %s", self._node_id, msg.type.name, msg.target)

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
                if now - peer.last_seen > timeout:
                    reason = f"{HEARTBEAT_TIMEOUT_REASON}: no message for {timeout:g}s"
                    try:
                        await self.transport.disconnect(peer_id, reason)
                    except Exception:
                        log.exception("%s: transport failed to drop %s", self._node_id, peer_id)
                    self.peer_disconnected(peer_id, reason)
                else:
                    self._spawn(self._send_quiet(Message(0, _HEARTBEAT, self._node_id, peer_id)))
