"""In-process transport. Payloads are serialized exactly as over a network; messages are handed
from node to node on the event loop. Faults can be injected: latency, a dropped link, a frozen node.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Any, ClassVar

from node_comm import (
    ConfigError,
    ConnectFailedError,
    DisconnectKind,
    Message,
    Node,
    NodeNotConnectedError,
    Transport,
    TransportHost,
)

from .config import MemoryTransportConfig

# One hub of running nodes per event loop, so nodes left running by one test (or thread) never
# collide with another's.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MemoryTransport]] = weakref.WeakKeyDictionary()


#: ``ctx.peer_identity`` of a peer in the same process (authenticated: it is who it says it is).
MEMORY_IDENTITY = "memory"


def _hub() -> dict[str, MemoryTransport]:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = {}
    return hub


class MemoryTransport(Transport):
    """``mode: memory``. Fault injection (for your own tests): :meth:`set_latency`,
    :meth:`drop_link`, :meth:`freeze` / :meth:`thaw`; reach it as ``node.transport``."""

    options_class: ClassVar[type[Any] | None] = MemoryTransportConfig

    def __init__(self, options: MemoryTransportConfig | None = None) -> None:
        super().__init__(options or MemoryTransportConfig())
        self.latency: float = float(self.options.latency)
        self._peer_latency: dict[str, float] = {}
        self._links: dict[str, MemoryTransport] = {}
        # One token per link, shared by both ends: a delayed message is delivered only if the link
        # it was sent on still exists (what was in flight on a dropped link is lost with it).
        self._tokens: dict[str, object] = {}
        self._frozen = False
        self._held: deque[Message] = deque()
        self._node_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str | None:
        return f"memory://{self._node_id}" if self._node_id else None

    async def start(self, host: TransportHost) -> None:
        hub = _hub()
        node_id = host.node_id
        if node_id in hub:
            raise ConfigError(
                f"a node with id {node_id!r} is already running in this process (memory transport); "
                "give every node a unique node_id, or stop the other one first"
            )
        await super().start(host)
        self._node_id = node_id
        self._loop = asyncio.get_running_loop()
        hub[node_id] = self

    async def stop(self, reason: str = "node stopped") -> None:
        hub = _hubs.get(self._loop) if self._loop is not None else None
        if hub is not None and hub.get(self._node_id) is self:
            del hub[self._node_id]
        for peer in list(self._links):
            self._unlink(peer, f"peer {self._node_id!r} stopped", reason, DisconnectKind.STOPPED)

    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        other = _hub().get(node_id)
        if other is None:
            running = ", ".join(sorted(_hub())) or "none"
            raise ConnectFailedError(
                node_id,
                f"no running node {node_id!r} in this process (memory transport); start it first or "
                f"check the id; running nodes: {running}",
                address,
            )
        if other._frozen or self._frozen:
            await asyncio.sleep(timeout)
            raise ConnectFailedError(node_id, f"node {node_id!r} did not answer within {timeout:g}s", address)
        if node_id in self._links:
            return
        self._links[node_id] = other
        other._links[self._node_id] = self
        self._tokens[node_id] = other._tokens[self._node_id] = object()
        # Both nodes live in this process: each is who it says it is.
        self.host.peer_connected(node_id, other.address, identity=MEMORY_IDENTITY)
        other.host.peer_connected(self._node_id, self.address, identity=MEMORY_IDENTITY)

    async def send(self, message: Message) -> None:
        other = self._links.get(message.target)
        if other is None:
            raise NodeNotConnectedError(message.target)
        if not self._frozen:
            # Flow control: while the receiver is not reading from this node (its notify handlers
            # are at their cap), the sender waits, as over a network whose buffers are full.
            paused = getattr(other.host, "reading_paused", None)
            gate = paused(self._node_id) if paused is not None else None
            while gate is not None:
                await gate
                other = self._links.get(message.target)
                if other is None:
                    raise NodeNotConnectedError(message.target)
                gate = paused(self._node_id) if paused is not None else None
        # Always a copy: the sender's interceptors still hold ``message`` (a logging interceptor reads
        # its payload after the reply), and what the receiver's interceptors do to theirs must not
        # show there, as over a network.
        msg = message.copy()
        if self._frozen:
            self._held.append(msg)
            return
        delay = self._peer_latency.get(message.target, self.latency)
        if delay > 0:
            assert self._loop is not None
            self._loop.call_later(delay, other._receive_on, self._tokens.get(message.target), msg)
        else:
            other._receive(msg)

    def _receive_on(self, token: object, msg: Message) -> None:
        if self._tokens.get(msg.source) is token:
            self._receive(msg)

    def _receive(self, msg: Message) -> None:
        if self._frozen:
            self._held.append(msg)
        elif msg.source in self._links:
            self.host.deliver(msg)

    async def disconnect(self, node_id: str, reason: str, *, may_return: bool = False) -> None:
        self._unlink(node_id, reason, reason, DisconnectKind.STOPPED)

    def _unlink(
        self, node_id: str, their_reason: str, our_reason: str, their_kind: DisconnectKind = DisconnectKind.LOST
    ) -> None:
        other = self._links.pop(node_id, None)
        if other is None:
            return
        self._tokens.pop(node_id, None)
        if other._links.get(self._node_id) is self:
            del other._links[self._node_id]
            other._tokens.pop(self._node_id, None)
            other.host.peer_disconnected(self._node_id, their_reason, kind=their_kind)
        self.host.peer_disconnected(node_id, our_reason)

    # ------------------------------------------------------------------ fault injection
    def set_latency(self, seconds: float, peer: str | None = None) -> None:
        """Delay every message this node sends (to ``peer`` only, when given) by ``seconds``."""
        if peer is None:
            self.latency = seconds
        else:
            self._peer_latency[peer] = seconds

    def drop_link(self, peer: str, reason: str = "link dropped (injected fault)") -> None:
        """Cut the link to ``peer`` abruptly, as a network failure would: both sides see
        ``disconnect`` and their pending calls on it fail at once."""
        self._unlink(peer, reason, reason)

    def freeze(self) -> None:
        """Make this node unresponsive, like a SIGSTOPped process: what it sends and receives is
        held (not lost) until :meth:`thaw`. Heartbeats of its peers will notice."""
        self._frozen = True

    def thaw(self) -> None:
        """Undo :meth:`freeze`; held messages flow again, in order."""
        self._frozen = False
        held, self._held = self._held, deque()
        for msg in held:
            if msg.target == self._node_id:
                self._receive(msg)
            else:
                other = self._links.get(msg.target)
                if other is not None:
                    other._receive(msg)

    @property
    def frozen(self) -> bool:
        return self._frozen


def memory_transport(node: Node) -> MemoryTransport:
    """The memory transport of ``node`` (for fault injection); a clear error for other modes."""
    transport = node.transport
    if not isinstance(transport, MemoryTransport):
        raise ConfigError(f"node {node.node_id!r} uses transport {node.config.transport.mode!r}, not 'memory'")
    return transport
