"""``Node``: registers methods, calls other nodes' methods, and serves calls from them.

``Node`` is the façade of the kernel's parts: the outbound call table (:mod:`.calls`), the inbound
dispatcher (:mod:`.dispatch`) and the peer table (:mod:`.peers`), which is what the transport is
started with (its :class:`~node_comm.transport.TransportHost`), all sharing one :class:`.Runtime`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ._malloc import reuse_freed_memory
from .assembly import assemble
from .config import MethodOptions, NodeConfig
from .connecting import retry_connect
from .disconnects import DisconnectKind
from .dispatch import Handler, InboundDispatcher
from .events import EventEmitter, EventHandler
from .exceptions import (
    ConfigError,
    NodeNotConnectedError,
    NodeNotStartedError,
)
from .interceptor import InterceptorChain
from .message import ProgressCallback
from .outbound import BroadcastProgress, Outbound
from .peers import PeerTable
from .plugins import Registries
from .runtime import Runtime
from .serializer import SerializerRegistry
from .transport import Transport

__all__ = ["Handler", "Node"]


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
        self._events = EventEmitter()
        self._rt = Runtime(node_id, config, self.transport)
        self._dispatcher = InboundDispatcher(self, self._rt, self._serializer_registry, self._interceptor_chain)
        self._peer_table = PeerTable(self._rt, self._events, self._dispatcher)
        self._calls = self._peer_table.calls
        self._outbound = Outbound(
            self, self._rt, self._serializer_registry, self._interceptor_chain, self._calls, self._peer_table.peers
        )
        # The tables themselves, for code and tests that look inside a node.
        self._peers = self._peer_table.peers
        self._pending = self._calls.pending
        self._background = self._rt.background
        self._heartbeat_task: asyncio.Task[None] | None = None

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
        return self._rt.started

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
        return sorted(self._dispatcher.methods)

    @property
    def serializers(self) -> SerializerRegistry:
        """This node's serializers; ``node.serializers.register(s)`` adds one."""
        return self._serializer_registry

    @property
    def interceptors(self) -> InterceptorChain:
        """This node's interceptor chain; ``node.interceptors.add(i)`` appends one."""
        return self._interceptor_chain

    def __repr__(self) -> str:
        state = "running" if self._rt.started else "stopped"
        return f"<Node {self._node_id!r} {self.config.transport.mode} {state} peers={len(self._peers)}>"

    # ------------------------------------------------------------------ registration and events
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
        event loop). ``options.serializer`` is the only serializer the method accepts (default json);
        ``options.authenticated_only`` (default: on for pickle) refuses unauthenticated callers.
        Registering a name twice is an error unless ``replace=True``.
        """
        self._dispatcher.register(name, handler, options, replace)

    def unregister(self, name: str) -> None:
        """Stop serving method ``name``."""
        self._dispatcher.unregister(name)

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
        rt = self._rt
        if rt.started:
            return
        rt.begin()
        if self.config.reuse_freed_memory:
            reuse_freed_memory()
        await self.transport.start(self._peer_table)
        rt.started = True
        if self.config.loop_block_warning is not None:
            rt.watch(self.config.loop_block_warning, self._dispatcher.handler_codes)
        hb = self.config.heartbeat
        if hb.enabled:
            assert rt.loop is not None
            self._heartbeat_task = rt.loop.create_task(self._peer_table.heartbeat_loop(hb.interval, hb.timeout))

    async def stop(self, grace: float | None = None) -> None:
        """Stop: refuse new calls, let in-flight inbound calls finish within ``grace`` seconds
        (default ``config.shutdown_grace``), then close every connection."""
        rt = self._rt
        if not rt.started:
            return
        rt.stopping = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        grace = self.config.shutdown_grace if grace is None else grace
        me = asyncio.current_task()  # a handler may stop its own node: never wait for or cancel it
        inflight = self._peer_table.inflight(me)
        if inflight and grace > 0:
            await asyncio.wait(inflight, timeout=grace)
        for task in inflight:
            task.cancel()
        self._peer_table.closing = True
        try:
            await self.transport.stop(f"node {self._node_id!r} stopped")
        finally:
            self._peer_table.closing = False
            rt.started = False
            for peer_id in list(self._peers):
                self._peer_table.peer_disconnected(peer_id, "local node stopped")
            self._calls.close(NodeNotStartedError(f"node {self._node_id!r} stopped"))
            rt.close(me)
            await self._events.drain(timeout=max(grace, 1.0))

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_running(self) -> None:
        if not self._rt.started or self._rt.stopping:
            raise NodeNotStartedError(
                f"node {self._node_id!r} is not running; call `await node.start()` (or use `async with node:`) first"
            )

    # ------------------------------------------------------------------ connections
    async def connect(
        self,
        node_id: str,
        address: str | None = None,
        *,
        timeout: float | None = None,
        retry: float | None = None,
    ) -> None:
        """Connect to ``node_id`` (at ``address`` for network transports). After it, both nodes
        list each other as connected and either may call the other. A no-op when connected.

        ``retry`` (seconds) keeps retrying a first dial that fails (the peer not started yet), with
        backoff (0.1 s doubling to 2 s, with jitter), until it succeeds or ``retry`` seconds have
        passed; then the last :class:`ConnectFailedError` is raised. ``timeout`` bounds each attempt
        (default ``config.connect_timeout``)."""
        self._check_running()
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"node_id must be a non-empty string, got {node_id!r}")
        if node_id == self._node_id:
            raise ConfigError(f"node {node_id!r} cannot connect to itself")
        if node_id in self._peers:
            return
        attempt = self.config.connect_timeout if timeout is None else timeout
        if not retry:
            await self.transport.connect(node_id, address, attempt)
            return
        await retry_connect(self.transport, node_id, address, attempt, retry, lambda: node_id in self._peers)

    async def disconnect(self, node_id: str, reason: str = "disconnected by local node") -> None:
        """Close the connection to ``node_id``; its pending calls fail at once."""
        if node_id not in self._peers:
            return
        self._peer_table.expect(node_id, DisconnectKind.LOCAL)
        await self.transport.disconnect(node_id, reason)
        self._peer_table.peer_disconnected(node_id, reason, kind=DisconnectKind.LOCAL)

    async def wait_for_peers(self, peers: int | Iterable[str], timeout: float | None = None) -> list[str]:
        """Wait until ``peers`` (a number of peers, or the ids that must all be) are connected;
        returns the ids connected then. Raises :class:`PeersNotConnectedError` after ``timeout``
        seconds (``None``: wait as long as it takes)."""
        self._check_running()
        return await self._peer_table.wait_for(peers, timeout)

    # ------------------------------------------------------------------ calls
    async def call(
        self,
        target: str,
        method: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        serializer: str | None = None,
        metadata: dict[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Call ``method`` on node ``target`` and return the handler's result.

        ``timeout`` defaults to ``config.default_timeout``; inside a handler the call also gets no
        more than the remaining deadline of the call being served. Raises
        :class:`NodeNotConnectedError`, :class:`CallTimeoutError`, :class:`RemoteExecutionError`
        (with ``.code``), :class:`SerializationError`, or :class:`PayloadTooLargeError` for a
        result past this node's ``decode_limits``. Payloads of ``offload_threshold`` bytes or more
        are encoded and decoded in a worker thread. ``progress(direction, done, total)`` is called
        as a payload sent in chunks goes out (``"sent"``) and as a reply in chunks comes in
        (``"received"``), the last time with ``done == total``; never for small payloads.
        """
        self._check_running()
        if target not in self._peers:
            raise NodeNotConnectedError(target)
        out = self._outbound
        if out.is_large(payload):
            ser, data = await out.encode_in_thread(serializer, payload, target, method)
        else:
            ser, data = out.encode(serializer, payload, target, method)
        return await out.call_encoded(target, method, ser, data, timeout, metadata, progress)

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
        out = self._outbound
        if out.is_large(payload):
            ser, data = await out.encode_in_thread(serializer, payload, target, method)
        else:
            ser, data = out.encode(serializer, payload, target, method)
        await out.notify_encoded(target, method, ser, data, metadata)

    async def broadcast(
        self,
        method: str,
        payload: Any = None,
        exclude: Iterable[str] | None = None,
        timeout: float | None = None,
        *,
        serializer: str | None = None,
        targets: Iterable[str] | None = None,
        metadata: dict[str, str] | None = None,
        progress: BroadcastProgress | None = None,
    ) -> dict[str, Any]:
        """Call ``method`` on every connected node at once (or on ``targets``, a chosen subset);
        returns ``{node_id: result or exception}``. One node's failure never fails the others; a
        target that is not connected gets a :class:`NodeNotConnectedError`. ``metadata`` goes with
        every call, as with :meth:`call`; ``progress(target, direction, done, total)`` as with
        :meth:`call`. The payload is encoded once; one the serializer cannot encode raises
        :class:`SerializationError` and nothing is sent."""
        self._check_running()
        chosen, live, absent = self._outbound.choose(targets, exclude)
        if not live:
            return dict(absent)
        out = self._outbound
        if out.is_large(payload):  # once, not per target
            ser, data = await out.encode_in_thread(serializer, payload, "<broadcast>", method)
        else:
            ser, data = out.encode(serializer, payload, "<broadcast>", method)
        results = dict(
            zip(live, await out.broadcast_encoded(live, method, ser, data, timeout, metadata, progress), strict=True)
        )
        results.update(absent)
        return {t: results[t] for t in chosen}
