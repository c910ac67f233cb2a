"""The peer table: the node's side of the transport contract (:class:`~node_comm.transport.TransportHost`).

It knows which peers are connected and how the transport authenticated them, receives what they
send (replies go to the outbound call table, requests and notifies to the inbound dispatcher within
each peer's limits), applies back-pressure, and runs the heartbeat monitor.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .calls import OutboundCalls
from .disconnects import DisconnectKind, DisconnectReason
from .dispatch import InboundDispatcher
from .events import EventEmitter
from .exceptions import ConfigError, ErrorCode, PeersNotConnectedError
from .message import Message, MessageType
from .runtime import Runtime
from .transport import HEARTBEAT_TIMEOUT_REASON, disconnect_accepts_may_return

_REQUEST = MessageType.REQUEST
_NOTIFY = MessageType.NOTIFY
_RESPONSE = MessageType.RESPONSE
_ERROR = MessageType.ERROR
_CANCEL = MessageType.CANCEL
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_ACK = MessageType.HEARTBEAT_ACK

#: Notifies a peer may have waiting past ``max_concurrent_notifies_per_peer`` (a transport that
#: pauses reading holds at most a batch; one that cannot, e.g. a broker's push, holds what the peer
#: sends): past either bound the peer is disconnected, loudly, instead of growing the node's memory.
MAX_HELD_NOTIFIES = 4096
MAX_HELD_BYTES = 64 * 1024 * 1024


def past_held_bound(count: int, held_bytes: int, size: int) -> str | None:
    """Why one more message of ``size`` bytes may not wait beside ``count`` others of ``held_bytes``
    (``None``: it may). For the kernel's held notifies and a transport's parked messages alike."""
    if count >= MAX_HELD_NOTIFIES or held_bytes + size > MAX_HELD_BYTES:
        return f"at most {MAX_HELD_NOTIFIES} or {MAX_HELD_BYTES} bytes may wait"
    return None


@dataclass(slots=True)
class Peer:
    """A connected peer."""

    address: str | None
    last_seen: float  # time of the last message of any kind from the peer
    inbound: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    identity: str | None = None  # how the transport authenticated it; None: not authenticated
    #: Inbound tasks the caller cancelled (their slot is free again) that have not finished yet.
    cancelling: set[asyncio.Task[None]] = field(default_factory=set)
    notifies: int = 0  # notify handlers running
    #: Notifies past max_concurrent_notifies_per_peer, run as running ones finish.
    held: deque[Message] = field(default_factory=deque)
    held_bytes: int = 0  # payload bytes of ``held``
    #: Completed when the transport may read from the peer again (see ``reading_paused``).
    resume: asyncio.Future[None] | None = None
    pinging: bool = False  # a heartbeat to the peer is being sent
    acking: bool = False  # a heartbeat ack to the peer is being sent


class PeerTable:
    """The transport host of one node: what its transport calls (on the node's event loop)."""

    def __init__(self, rt: Runtime, events: EventEmitter, dispatcher: InboundDispatcher) -> None:
        self._rt = rt
        self._events = events
        self._dispatcher = dispatcher
        self.peers: dict[str, Peer] = {}
        self.calls = OutboundCalls(rt, self.peers)
        #: Kinds of disconnects this node is causing (``node.disconnect``, heartbeats, ``stop``):
        #: the transport's callback for them gets that kind.
        self._expected: dict[str, DisconnectKind] = {}
        self.closing = False  # stop(): every disconnect from now on is LOCAL
        #: Called after every connect and disconnect (``Node.wait_for_peers``).
        self.watchers: set[Callable[[], None]] = set()

    @property
    def node_id(self) -> str:
        """The local node's id (a dialler's handshake carries it)."""
        return self._rt.node_id

    # ------------------------------------------------------------------ transport callbacks
    def peer_connected(self, peer_id: str, address: str | None, *, identity: str | None = None) -> None:
        """A link to ``peer_id`` is up (``identity``: how the transport authenticated it)."""
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.address = address
            peer.identity = identity
            return
        self.peers[peer_id] = Peer(address, time.monotonic(), identity=identity)
        rt = self._rt
        rt.rlog.debug("connect", "%s: connected to %r (%r)", rt.node_id, peer_id, address)
        self._notify_watchers()
        self._events.emit("connect", peer_id, address)

    def expect(self, peer_id: str, kind: DisconnectKind) -> None:
        """This node is about to end the link to ``peer_id`` for ``kind`` (LOCAL, HEARTBEAT)."""
        self._expected[peer_id] = kind

    def _notify_watchers(self) -> None:
        for watcher in list(self.watchers):
            watcher()

    def peer_disconnected(self, peer_id: str, reason: str, *, kind: DisconnectKind | None = None) -> None:
        """The link to ``peer_id`` is gone: fail its pending calls now, cancel what it asked for.
        ``kind`` says why (default: what this node is causing, else ``LOST``)."""
        expected = self._expected.pop(peer_id, None)
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        if expected is not None or self.closing:
            kind = expected or DisconnectKind.LOCAL
        if kind is None:
            kind = reason.kind if isinstance(reason, DisconnectReason) else DisconnectKind.LOST
        reason = DisconnectReason(str(reason), kind)
        rt = self._rt
        rt.rlog.debug("disconnect", "%s: disconnected from %r: %r", rt.node_id, peer_id, reason)
        self.calls.fail_peer(peer_id, reason)
        me = asyncio.current_task()
        for task in list(peer.inbound.values()):
            if task is not me:
                task.cancel()
        if peer.resume is not None:  # a transport waiting to read from it: read on (and find it gone)
            if not peer.resume.done():
                peer.resume.set_result(None)
            peer.resume = None
        self._notify_watchers()
        self._events.emit("disconnect", peer_id, reason)

    def deliver(self, message: Message) -> None:
        """``message`` arrived from ``message.source``. Never blocks; never raises for bad input."""
        peer = self.peers.get(message.source)
        rt = self._rt
        if peer is None:
            rt.rlog.debug("unconnected", "%s: dropped %s from unconnected %r", rt.node_id, message.type, message.source)
            return
        peer.last_seen = time.monotonic()  # liveness counts every message, not only heartbeats
        mtype = message.type
        if mtype is _RESPONSE or mtype is _ERROR:
            self.calls.resolve(message)
        elif mtype is _REQUEST:
            self._start_request(peer, message)
        elif mtype is _NOTIFY:
            self._start_notify(peer, message)
        elif mtype is _CANCEL:
            # The slot is the caller's again at once (its next call must not find it taken); the
            # task counts among those finishing their cancellation until it is done.
            task = peer.inbound.pop(message.id, None)
            if task is not None:
                peer.cancelling.add(task)
                task.add_done_callback(peer.cancelling.discard)
                task.cancel()
        elif mtype is _HEARTBEAT:
            if not peer.acking:  # at most one ack on its way per peer, never a task per frame
                peer.acking = True
                ack = Message(message.id, _HEARTBEAT_ACK, rt.node_id, message.source)
                rt.spawn(self._send_flagged(peer, "acking", ack))
        elif mtype is _HEARTBEAT_ACK:
            pass  # liveness only: recorded above
        else:
            rt.rlog.warning(
                ("unknown-type", message.source),
                "%s: dropped message of unknown type %r from %r",
                rt.node_id,
                mtype,
                message.source,
            )

    def transfer_progress(
        self, peer_id: str, message_id: int, mtype: MessageType, method: str, done: int, total: int
    ) -> None:
        """``done`` of ``total`` bytes of a chunked payload from ``peer_id`` arrived: a reply's go to
        its caller's progress callback, a request's or notify's to the ``transfer`` event."""
        if peer_id not in self.peers:
            return
        if mtype is _RESPONSE or mtype is _ERROR:
            self.calls.received(peer_id, message_id, done, total)
        elif mtype is _REQUEST or mtype is _NOTIFY:
            self._events.emit("transfer", peer_id, method, done, total)

    def peer_given_up(self, peer_id: str, reason: str) -> None:
        """The transport stopped redialling ``peer_id``: the ``gave_up`` event."""
        self._events.emit("gave_up", peer_id, reason)

    def reading_paused(self, peer_id: str) -> asyncio.Future[None] | None:
        """Flow control: ``None`` while the node takes more messages from ``peer_id``; else a future
        done when it does again (its notify handlers are at ``max_concurrent_notifies_per_peer``)."""
        peer = self.peers.get(peer_id)
        if peer is None or (peer.notifies < self._rt.config.max_concurrent_notifies_per_peer and not peer.held):
            return None
        resume = peer.resume
        if resume is None:
            loop = self._rt.loop
            assert loop is not None
            resume = peer.resume = loop.create_future()
        return asyncio.shield(resume)  # a waiter cancelled must not cancel it for the others

    # ------------------------------------------------------------------ inbound within limits
    def _start_request(self, peer: Peer, msg: Message) -> None:
        rt = self._rt
        if rt.stopping or not rt.started:
            self._dispatcher.reply_error(msg, ErrorCode.UNAVAILABLE, f"node {rt.node_id!r} is shutting down")
            return
        limit = rt.config.max_concurrent_calls_per_peer
        # Cancelled tasks still finishing are bounded too (an honest caller has at most ``limit``
        # of them: its calls in flight), or REQUEST+CANCEL pairs could grow tasks.
        if len(peer.inbound) >= limit or msg.id in peer.inbound or len(peer.cancelling) > limit:
            self._dispatcher.reply_error(
                msg,
                ErrorCode.RESOURCE_EXHAUSTED,
                f"node {rt.node_id!r} is serving {len(peer.inbound)} calls from {msg.source!r} "
                f"(max_concurrent_calls_per_peer={limit})",
            )
            return
        loop = rt.loop
        assert loop is not None
        deadline = None if msg.deadline is None else time.monotonic() + msg.deadline
        task = loop.create_task(self._serve(peer, msg, deadline))
        # No deadline timer here: the caller sends CANCEL when its deadline passes, and a lost
        # link cancels every inbound task of that peer. The entry leaves the table as the call ends
        # (in _serve), or at once on the caller's CANCEL (which also covers a task cancelled before
        # it ever ran, whose own cleanup never runs): no done callback on the common path.
        peer.inbound[msg.id] = task

    async def _serve(self, peer: Peer, msg: Message, deadline: float | None) -> None:
        try:
            await self._dispatcher.serve(msg, deadline, peer.identity)
        finally:
            # Free the slot as soon as the reply is sent (the done callback comes a loop turn later).
            if msg.type is _REQUEST and peer.inbound.get(msg.id) is asyncio.current_task(self._rt.loop):
                del peer.inbound[msg.id]

    def _start_notify(self, peer: Peer, msg: Message) -> None:
        """Run a notify handler, or hold the notify while the peer has
        ``max_concurrent_notifies_per_peer`` running (the transport stops reading that peer
        meanwhile: see :meth:`reading_paused`; only what it had read already is held)."""
        rt = self._rt
        if peer.notifies < rt.config.max_concurrent_notifies_per_peer:
            self._run_notify(peer, msg)
            return
        size = len(msg.payload)
        bound = past_held_bound(len(peer.held), peer.held_bytes, size)
        if bound is not None:
            reason = (
                f"node {msg.source!r} sent {len(peer.held) + 1} notifies ({peer.held_bytes + size} bytes) past "
                f"max_concurrent_notifies_per_peer={rt.config.max_concurrent_notifies_per_peer} without waiting "
                f"({bound})"
            )
            rt.rlog.warning(("held-overflow", msg.source), "%s: disconnecting: %s", rt.node_id, reason)
            self._drop_soon(msg.source, reason)
            return
        peer.held.append(msg)
        peer.held_bytes += size

    def _run_notify(self, peer: Peer, msg: Message) -> None:
        rt = self._rt
        loop = rt.loop
        assert loop is not None
        deadline = None if msg.deadline is None else time.monotonic() + msg.deadline
        task = loop.create_task(self._serve(peer, msg, deadline))
        peer.notifies += 1
        rt.background.add(task)
        task.add_done_callback(functools.partial(self._notify_done, peer))

    def _notify_done(self, peer: Peer, task: asyncio.Task[Any]) -> None:
        rt = self._rt
        rt.background.discard(task)
        peer.notifies -= 1
        if peer.held:
            if rt.started:
                msg = peer.held.popleft()
                peer.held_bytes -= len(msg.payload)
                self._run_notify(peer, msg)
                return
            rt.rlog.debug(
                "held",
                "%s: %d notifies from %r not run: the node stopped",
                rt.node_id,
                len(peer.held),
                peer.held[0].source,
            )
            peer.held.clear()
            peer.held_bytes = 0
        resume = peer.resume
        if resume is not None and peer.notifies < rt.config.max_concurrent_notifies_per_peer:
            peer.resume = None
            if not resume.done():
                resume.set_result(None)

    async def wait_for(self, peers: int | Iterable[str], timeout: float | None) -> list[str]:
        """See :meth:`Node.wait_for_peers`."""
        node_id = self._rt.node_id
        if isinstance(peers, int):
            if isinstance(peers, bool) or peers < 0:
                raise ConfigError(f"wait_for_peers: expected a number of peers >= 0 or node ids, got {peers!r}")
            wanted: set[str] | None = None
            count = peers
        else:
            wanted = {peers} if isinstance(peers, str) else set(peers)
            count = len(wanted)

        def ready() -> bool:
            return len(self.peers) >= count if wanted is None else wanted <= self.peers.keys()

        if ready():
            return list(self.peers)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def check() -> None:
            if not done.done() and ready():
                done.set_result(None)

        self.watchers.add(check)
        try:
            await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            connected = list(self.peers)
            if wanted is None:
                raise PeersNotConnectedError(
                    f"node {node_id!r}: {len(connected)} of {count} peers connected after {timeout:g}s",
                    connected=connected,
                ) from None
            missing = sorted(wanted - set(connected))
            raise PeersNotConnectedError(
                f"node {node_id!r}: not connected after {timeout:g}s: {', '.join(map(repr, missing))}",
                missing=missing,
                connected=connected,
            ) from None
        finally:
            self.watchers.discard(check)
        return list(self.peers)

    def inflight(self, me: asyncio.Task[Any] | None) -> list[asyncio.Task[None]]:
        """The inbound calls running now (but ``me``)."""
        return [t for p in self.peers.values() for t in p.inbound.values() if t is not me]

    # ------------------------------------------------------------------ heartbeat
    async def _send_flagged(self, peer: Peer, flag: str, msg: Message) -> None:
        """Send a heartbeat or its ack, then clear ``peer.<flag>`` (one of each at a time per peer)."""
        try:
            await self._rt.send_quiet(msg)
        finally:
            setattr(peer, flag, False)

    async def _drop(self, peer_id: str, reason: str, kind: DisconnectKind) -> None:
        """This node ends the link to ``peer_id`` (silence, or a peer past a bound); it may come
        back (a transport that redials keeps doing so)."""
        rt = self._rt
        self.expect(peer_id, kind)
        try:
            if disconnect_accepts_may_return(rt.transport):
                await rt.transport.disconnect(peer_id, reason, may_return=True)
            else:  # a transport written before may_return
                await rt.transport.disconnect(peer_id, reason)
        except Exception:
            rt.rlog.exception(("drop", peer_id), "%s: transport failed to drop %r", rt.node_id, peer_id)
        self.peer_disconnected(peer_id, reason, kind=kind)

    def _drop_soon(self, peer_id: str, reason: str) -> None:
        """:meth:`_drop` from a callback (once per peer: a peer being dropped is not dropped again)."""
        if self._expected.get(peer_id) is not None:
            return
        self.expect(peer_id, DisconnectKind.LOCAL)
        self._rt.spawn(self._drop(peer_id, reason, DisconnectKind.LOCAL))

    async def heartbeat_loop(self, interval: float, timeout: float) -> None:
        """Every ``interval`` seconds ping each peer; drop a peer silent for ``timeout`` seconds."""
        rt = self._rt
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for peer_id, peer in list(self.peers.items()):
                if peer.resume is not None:  # this node stopped reading it: its silence is ours
                    peer.last_seen = now
                if now - peer.last_seen > timeout:
                    reason = f"{HEARTBEAT_TIMEOUT_REASON}: no message for {timeout:g}s"
                    await self._drop(peer_id, reason, DisconnectKind.HEARTBEAT)
                elif not peer.pinging and now - peer.last_seen >= interval:
                    # A peer heard from within the interval needs no ping: busy links carry no
                    # heartbeats, and of two nodes pinging each other only one ends up doing it.
                    peer.pinging = True
                    rt.spawn(self._send_flagged(peer, "pinging", Message(0, _HEARTBEAT, rt.node_id, peer_id)))
