"""The contract between the kernel and a transport plugin.

A transport moves :class:`~node_comm.message.Message` objects between nodes. The kernel owns
everything else: serialization, dispatch, deadlines, heartbeats, events. A transport tells the
kernel what happens through the :class:`TransportHost` it is started with.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, Protocol

from .disconnects import DisconnectKind
from .message import Message, MessageType

#: The human text that starts every reason the kernel gives when it drops a peer for silence. A
#: transport tells a heartbeat timeout from a deliberate disconnect by ``may_return``, not by this.
HEARTBEAT_TIMEOUT_REASON = "heartbeat timeout"


class TransportHost(Protocol):
    """What a transport may call on its node (the node implements this). All calls are made on the
    node's event loop thread."""

    @property
    def node_id(self) -> str:
        """The local node's id (the dialler's handshake carries it)."""
        ...

    def peer_connected(self, peer_id: str, address: str | None, *, identity: str | None = None) -> None:
        """A link to ``peer_id`` is up (dialled or accepted). Call once per link.

        ``identity`` says how the transport authenticated the peer (a certificate subject,
        ``"shared-secret"``, ``"memory"`` for the same process), or is ``None`` when it did not:
        handlers see it as ``ctx.peer_identity`` / ``ctx.authenticated``, and methods that take only
        authenticated callers (``pickle``) refuse a peer connected without one."""
        ...

    def peer_disconnected(self, peer_id: str, reason: str, *, kind: DisconnectKind | None = None) -> None:
        """The link to ``peer_id`` is gone; pending calls on it fail at once. Duplicates are ignored.
        ``kind`` says why when the transport knows (``STOPPED``: the peer said goodbye; ``LOST``;
        ``REPLACED``: a new connection took the id); the node knows the kinds it causes itself."""
        ...

    def deliver(self, message: Message) -> None:
        """A message arrived from ``message.source``. Never blocks; never raises for bad input."""
        ...

    def transfer_progress(
        self, peer_id: str, message_id: int, mtype: MessageType, method: str, done: int, total: int
    ) -> None:
        """Optional: ``done`` of ``total`` bytes of a chunked payload from ``peer_id`` have arrived
        (called as chunks arrive, the last time with ``done == total``). The node reports it to the
        caller waiting for that reply, or as the ``transfer`` event for a request or notify."""
        ...

    def peer_given_up(self, peer_id: str, reason: str) -> None:
        """Optional: the transport stopped trying to reconnect to ``peer_id`` (its redial policy ran
        out); the node fires the ``gave_up`` event."""
        ...

    def reading_paused(self, peer_id: str) -> Awaitable[None] | None:
        """Flow control: ``None`` when the transport may read on from ``peer_id``; else an awaitable
        that completes when it may (the node is busy with that peer's messages: its notify handlers
        are at ``max_concurrent_notifies_per_peer``). A transport calls this before it reads the next
        message or batch from ``peer_id`` and awaits what it returns, so the peer's data waits in
        the network (TCP and HTTP/2 flow control), not in memory. Optional: a transport that never
        calls it still works (what it delivers meanwhile is queued by the node, unbounded).
        Completes too when the peer disconnects."""
        ...


class Transport(abc.ABC):
    """Base class of transports. A plugin registers a factory ``factory(options) -> Transport``;
    ``options`` is the YAML section ``transport.NAME`` (an instance of ``options_class`` when the
    factory declares one, else a dict, or ``None`` when the section is absent)."""

    #: Dataclass the YAML section ``transport.NAME`` is validated into (optional).
    options_class: ClassVar[type[Any] | None] = None

    #: Whether :meth:`send` takes a :class:`~node_comm.message.PartsMessage`: a large payload as a
    #: list of buffers (a serializer's ``serialize_parts``), sent from ``msg.parts`` without joining.
    #: Such a send must not return before it is done reading the buffers (they borrow the caller's
    #: objects). ``False`` (the default): every payload arrives as one ``bytes``-like object.
    scatter_gather: ClassVar[bool] = False

    def __init__(self, options: Any = None) -> None:
        self.options = options
        self._host: TransportHost | None = None

    @property
    def attached(self) -> bool:
        """Whether :meth:`start` has given this transport its host (callbacks can be made)."""
        return self._host is not None

    @property
    def host(self) -> TransportHost:
        if self._host is None:
            raise RuntimeError("transport is not started")
        return self._host

    @property
    def address(self) -> str | None:
        """Where other nodes can reach this one, or ``None`` (in-process, or dial-only)."""
        return None

    async def start(self, host: TransportHost) -> None:
        """Begin serving for ``host`` (bind, listen, register)."""
        self._host = host

    @abc.abstractmethod
    async def stop(self, reason: str = "node stopped") -> None:
        """Close every link (calling ``host.peer_disconnected`` for each) and release resources."""

    @abc.abstractmethod
    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        """Open a link to ``node_id``, check it really is that node, and call
        ``host.peer_connected`` before returning. Raise
        :class:`~node_comm.exceptions.ConnectFailedError` when it cannot, within ``timeout``."""

    @abc.abstractmethod
    async def send(self, message: Message) -> None:
        """Hand ``message`` to the link to ``message.target``. Raise
        :class:`~node_comm.exceptions.NodeNotConnectedError` when there is none, or another
        :class:`~node_comm.exceptions.NodeCommError` for a problem with this message only."""

    async def send_many(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Hand one broadcast to many peers. ``messages`` share type, method, serializer and payload
        (the same bytes object) and differ in target, id, deadline and metadata. Returns, per
        message, ``None`` once handed over or the exception :meth:`send` would have raised for it;
        one target's failure never stops the others. The default sends each concurrently; a
        transport that can fan out (a broker) overrides it to send the payload once."""
        results = await asyncio.gather(*(self.send(m) for m in messages), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    @abc.abstractmethod
    async def disconnect(self, node_id: str, reason: str, *, may_return: bool = False) -> None:
        """Close the link to ``node_id`` (if any), calling ``host.peer_disconnected``.

        ``may_return=True`` says the peer was dropped for silence (a heartbeat timeout) and may come
        back: a transport that redials keeps doing so and sends no goodbye. ``False``: a deliberate
        disconnect (forget the peer). The keyword is optional for transports: the kernel passes it
        only to a ``disconnect`` that accepts it (see :func:`disconnect_accepts_may_return`)."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def disconnect_accepts_may_return(transport: Transport) -> bool:
    """Whether ``transport.disconnect`` takes the ``may_return`` keyword (transports written before
    it was added have ``disconnect(node_id, reason)`` and must keep working)."""
    try:
        params = inspect.signature(transport.disconnect).parameters
    except (TypeError, ValueError):
        return False
    return "may_return" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
