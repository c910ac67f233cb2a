"""One connection to one peer: its outbound queue and writer task, its reader task, chunk reassembly.

A writer task drains the queue and sends everything queued as one ``Batch`` (on an idle link
carrying one small frame at a time, the sender starts the write itself: see ``Link._kick``).
Payloads larger than ``chunk_size`` go as a head frame plus ``CHUNK`` frames, interleaved with
other traffic. The reader hands each frame to the transport's host, reassembling chunked payloads
first (in buffers that grow as bytes arrive, within the node-wide ``ReceiveBudget``).

Bounds a peer cannot push past: the bytes being reassembled (node-wide), a transfer's idle time
(``transfer_timeout``), the refused transfers remembered (``MAX_DROPPED``), malformed or unknown
frames (``MAX_BAD_FRAMES``, then the stream is closed), and the outbound queue: control frames
(error replies, cancels, heartbeats) never wait but may pass ``send_queue_bytes`` only by a fixed
margin, and a queue that stays full with no write completing for ``stall_timeout`` closes the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from node_comm import (
    ConnectionLostError,
    ErrorCode,
    ErrorInfo,
    Message,
    MessageType,
    PayloadTooLargeError,
)
from node_comm.message import PartsMessage, PayloadParts, report_progress
from node_comm.peer_logging import RateLimitedLog

from .config import GrpcTransportConfig
from .direct_write import DirectWrite, start_write
from .reassembly import MAX_DROPPED, Partial, ReceiveBudget
from .wire import (
    F_CHUNK,
    F_GOODBYE,
    F_PROBE,
    F_PROBE_ACK,
    FRAME_OVERHEAD,
    INLINE_PAYLOAD_MIN,
    MESSAGE_TYPES,
    SCAN_BATCH_MIN,
    Batch,
    Envelope,
    chunk_header,
    encode,
    error_frame,
    inline_parts_item,
    inline_payload_item,
    item,
    scan_batch,
    split_chunks,
    varint,
)
from .write_budget import WriteBudget

log = logging.getLogger("node_comm.grpc")

_REQUEST = MessageType.REQUEST
_RESPONSE = MessageType.RESPONSE
_ERROR = MessageType.ERROR


_PROBE = Envelope(type=F_PROBE).SerializeToString()
_PROBE_ACK = Envelope(type=F_PROBE_ACK).SerializeToString()
_NOTIFY_FRAME = int(MessageType.NOTIFY)
#: Small frames that never wait for queue space: replies to refused calls, cancels, heartbeats.
_CONTROL = frozenset({_ERROR, MessageType.CANCEL, MessageType.HEARTBEAT, MessageType.HEARTBEAT_ACK})
#: Malformed or unknown frames a peer may send (each answered with an error) before its stream is closed.
MAX_BAD_FRAMES = 16


class LinkOwner(Protocol):
    """What a :class:`Link` needs from whoever owns it (the transport)."""

    def lost(self, link: Link, reason: str) -> None:
        """The stream broke or must be closed (peer gone, not reading, hostile): drop ``link``."""

    def goodbye(self, link: Link, reason: str) -> None:
        """The peer said goodbye on ``link``."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task the owner keeps (and cancels when it stops)."""

    def deliver(self, msg: Message) -> None:
        """Hand a message received from the peer to the node."""

    def transfer_progress(
        self, peer_id: str, message_id: int, mtype: MessageType, method: str, done: int, total: int
    ) -> None:
        """``done`` of ``total`` bytes of a chunked payload from ``peer_id`` have arrived."""

    def reading_paused(self, peer_id: str) -> Awaitable[Any] | None:
        """An awaitable to wait on before reading more from ``peer_id`` (flow control), or ``None``."""


class _Writer(enum.Enum):
    """Who writes the outbound queue of a link now."""

    IDLE = "idle"  # nothing in flight: a sender may start a direct write (see Link._kick)
    DIRECT = "direct"  # a write started by a sender is in flight (a DirectWrite)
    TASK = "task"  # the writer task is draining the queue, or has claimed what is queued


_IDLE, _DIRECT, _TASK = _Writer.IDLE, _Writer.DIRECT, _Writer.TASK


class Link:
    """One connection to one peer: the stream, its outbound queue and writer, its reader."""

    def __init__(
        self,
        owner: LinkOwner,
        peer_id: str,
        address: str | None,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[bytes], Coroutine[Any, Any, None]],
        *,
        dialled: bool,
        call: Any = None,
        channel: aio.Channel | None = None,
        cfg: GrpcTransportConfig,
        node_id: str,
        rlog: RateLimitedLog,
        budget: ReceiveBudget,
        write_budget: WriteBudget | None = None,
        identity: str | None = None,
        early: list[Any] | None = None,
    ) -> None:
        self._owner = owner
        self._cfg = cfg
        self._node_id = node_id
        self._rlog = rlog
        self.peer_id = peer_id
        self.address = address
        self._read = read
        self._write = write
        self._write_budget = write_budget
        self.dialled = dialled
        self._call = call
        self._channel = channel
        self._loop = asyncio.get_running_loop()
        self._queue: deque[tuple[tuple[bytes | memoryview, ...], int]] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._state = _IDLE
        self._direct_write: DirectWrite | asyncio.Task[Any] | None = None  # the DIRECT write in flight
        self._defer = False  # frames queued behind a write: leave idle writes to the writer task
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._taken = 0  # frames the writer took off the queue, ever (see _taken_by_writer)
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._final = False  # closing: the writer task ends once the queue (a goodbye) is written
        self._transfers = itertools.count(1)
        self._partials: dict[int, Partial] = {}
        self._budget = budget
        self._sweep: asyncio.TimerHandle | None = None  # drops transfers idle for transfer_timeout
        self._dropped: dict[int, int] = {}  # refused or dropped transfer id -> bytes still to skip
        self._bad = 0  # malformed or unknown frames received
        # Control frames may pass send_queue_bytes by this much: room for the one data frame that
        # may overshoot it plus a margin; past it the peer is taken for one that does not read.
        self._hard_limit = (
            cfg.send_queue_bytes + cfg.chunk_size + FRAME_OVERHEAD + max(64 * 1024, cfg.send_queue_bytes // 4)
        )
        self._writes = 0  # writes completed, to tell a stalled stream from a slow one
        self._stall: asyncio.TimerHandle | None = None
        self._stall_mark = 0
        self.closed = False
        self.close_reason = ""
        self.status: tuple[grpc.StatusCode, str] | None = None
        self.finished: asyncio.Future[None] = self._loop.create_future()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._early: list[Any] = early or []
        #: Who the peer proved to be (``ctx.peer_identity``), or ``None`` when not authenticated.
        self.identity = identity
        self._probe: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._writer = self._loop.create_task(self._write_loop())
        self._reader = self._loop.create_task(self._read_loop())

    def deliver_early(self) -> None:
        """Handle the frames that came in the handshake's batch, once the node knows of the peer."""
        early, self._early = self._early, []
        for env in early:
            if self.closed:
                break
            self._on_frame(env)

    # ------------------------------------------------------------------ outbound
    async def _put(self, parts: tuple[bytes | memoryview, ...], size: int) -> None:
        """Queue one frame, waiting while ``send_queue_bytes`` are queued. Senders that wait get in
        in the order they came (a sender of many chunks must not take every freed byte before a
        small call that waits behind it): the writer hands room to the first waiter, which passes
        it on to the next while room is left."""
        limit = self._cfg.send_queue_bytes
        if (self._queued >= limit or self._waiters) and not self.closed:
            self._congested()
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # its turn came, but it is gone: pass it on
                    self._hand_over()
                raise
        if self.closed:
            raise ConnectionLostError(self.peer_id, self.close_reason)
        self._queue.append((parts, size))
        self._queued += size
        self._kick()
        if self._waiters and self._queued < limit:
            self._hand_over()

    def queue_control(self, env_bytes: bytes) -> bool:
        """Queue a small control frame without waiting (replies to bad input, aborts)."""
        parts = item(env_bytes)
        return self._put_control(parts, len(parts[0]) + len(parts[1]))

    def _put_control(self, parts: tuple[bytes | memoryview, ...], size: int) -> bool:
        """Queue a small control frame without waiting for ``send_queue_bytes``: it may pass it by
        a fixed margin only; past that the peer is not reading and the link is closed. False
        when not queued (closed)."""
        if self.closed:
            return False
        if self._queued + size > self._hard_limit:
            self._not_reading(
                f"{self._queued} bytes are waiting to be sent to it, past "
                f"send_queue_bytes={self._cfg.send_queue_bytes} and the room kept for "
                "replies and control frames"
            )
            return False
        self._queue.append((parts, size))
        self._queued += size
        if self._queued >= self._cfg.send_queue_bytes:
            self._congested()
        self._wakeup.set()
        return True

    def _congested(self) -> None:
        """The outbound queue is full: watch that writes still complete (see ``_check_stall``)."""
        if self._stall is None and not self.closed:
            self._stall_mark = self._writes
            self._stall = self._loop.call_later(self._cfg.stall_timeout, self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        waiting = any(not fut.done() for fut in self._waiters)  # cancelled senders do not count
        if self.closed or (self._queued < self._cfg.send_queue_bytes and not waiting):
            return
        if self._writes != self._stall_mark:  # slow, but the peer reads: watch on
            self._congested()
            return
        self._not_reading(
            f"nothing could be written to it for {self._cfg.stall_timeout:g}s while its "
            "send queue was full (transport.grpc.stall_timeout)"
        )

    def _not_reading(self, why: str) -> None:
        reason = f"node {self.peer_id!r} is not reading its stream: {why}"
        self._rlog.warning(
            ("stall", self.peer_id), "%s: closing the stream to %r: %r", self._node_id, self.peer_id, reason
        )
        self.status = (grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
        self._owner.lost(self, reason)

    async def send(self, msg: Message) -> None:
        cfg = self._cfg
        if type(msg) is PartsMessage and msg.parts is not None:
            await self._send_parts(msg, msg.parts)
            return
        payload = msg.payload
        n = len(payload)
        if n > cfg.max_payload_size:
            msg = self._too_large(msg, n)  # an ERROR answering the caller, or raises
            payload, n = b"", 0
        if INLINE_PAYLOAD_MIN <= n <= cfg.chunk_size:
            head = encode(msg, b"")
            if len(head) > FRAME_OVERHEAD:
                raise PayloadTooLargeError(
                    f"frame of {msg.method or msg.type.name} to {msg.target!r} is {len(head) + n} bytes "
                    "(metadata too large)"
                )
            big, size = inline_payload_item(head, payload)
            await self._put(big, size)
            return
        if n <= cfg.chunk_size:
            env = encode(msg, payload)
            if len(env) > cfg.chunk_size + FRAME_OVERHEAD:
                raise PayloadTooLargeError(
                    f"frame of {msg.method or msg.type.name} to {msg.target!r} is {len(env)} bytes (metadata too large)"
                )
            if self._queued < cfg.send_queue_bytes and not self.closed:  # fast path
                self._append(env)
                return
            parts = item(env)
            size = len(parts[0]) + len(parts[1])
            if msg.type in _CONTROL and size < INLINE_PAYLOAD_MIN:
                # Never a waiting task per refused call or heartbeat behind a full queue.
                if not self._put_control(parts, size):
                    raise ConnectionLostError(self.peer_id, self.close_reason)
                return
            await self._put(parts, size)
            return
        await self._send_chunked(msg, (payload,), n)

    def send_nowait(self, msg: Message) -> bool:
        """Queue ``msg`` now when it is a small frame and the send queue has room (``send``'s fast
        path, without a coroutine): True when queued. False: ``send`` must take it (it may wait,
        or raise what is wrong with it). A broadcast hands most of its requests over this way."""
        cfg = self._cfg
        if type(msg) is PartsMessage and msg.parts is not None:
            return False  # a payload as buffers (scatter-gather) is never a small frame
        n = len(msg.payload)
        if n >= INLINE_PAYLOAD_MIN or n > cfg.max_payload_size or n > cfg.chunk_size:
            return False
        if self._queued >= cfg.send_queue_bytes or self.closed:
            return False
        env = encode(msg, msg.payload)
        if len(env) > cfg.chunk_size + FRAME_OVERHEAD:
            return False
        self._append(env)
        return True

    def _append(self, env: bytes) -> None:
        """Queue one encoded frame (the send queue has room) and start or wake its writer."""
        prefix = b"\x0a" + varint(len(env))
        size = len(prefix) + len(env)
        self._queue.append(((prefix, env), size))
        self._queued += size
        self._kick()

    def _too_large(self, msg: Message, n: int) -> Message:
        """A payload over ``max_payload_size``: the ERROR to send instead of a RESPONSE (the caller
        learns why, rather than waiting); for anything else :class:`PayloadTooLargeError`."""
        text = (
            f"payload of {msg.method or msg.type.name} to {msg.target!r} is {n} bytes, over "
            f"max_payload_size={self._cfg.max_payload_size}"
        )
        if msg.type is not _RESPONSE:
            raise PayloadTooLargeError(text)
        error = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED.value, text)
        return Message(msg.id, _ERROR, msg.source, msg.target, msg.method, error=error)

    async def _send_parts(self, msg: PartsMessage, parts: PayloadParts) -> None:
        """Send a payload given as buffers (scatter-gather): they go into the writer's batches as
        they are, joined nowhere else. Returns once the writer has copied the last of them (they
        borrow the caller's objects, e.g. numpy arrays, which the caller may change afterwards)."""
        cfg = self._cfg
        n = parts.nbytes
        if n > cfg.max_payload_size:
            await self.send(self._too_large(msg, n))
            return
        if n > cfg.chunk_size:
            await self._send_chunked(msg, parts.buffers, n, borrowed=True)
            return
        head = encode(msg, b"")
        if len(head) > FRAME_OVERHEAD:
            raise PayloadTooLargeError(
                f"frame of {msg.method or msg.type.name} to {msg.target!r} is {len(head) + n} bytes "
                "(metadata too large)"
            )
        frame, size = inline_parts_item(head, parts.buffers, n)
        await self._put(frame, size)
        try:
            await self._taken_by_writer()
        except BaseException:
            self._withdraw([frame])  # the caller stopped waiting (a deadline): not sent at all
            raise

    def _withdraw(self, frames: list[tuple[Any, ...]]) -> None:
        """A send stopped before the writer took ``frames``: those still queued are emptied (the
        writer skips them, counting their size as before), so no buffer of the caller's, which
        it may now change, is read any more and none of it goes out."""
        mine = {id(f) for f in frames}
        queue = self._queue
        for i, (parts, size) in enumerate(queue):
            if id(parts) in mine:
                queue[i] = ((), size)

    async def _taken_by_writer(self) -> None:
        """Wait until the writer has taken (copied into a batch) every frame queued so far."""
        mark = self._taken + len(self._queue)
        while self._taken < mark and not self.closed:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._flush_waiters.append((mark, fut))
            await fut
        if self._taken < mark:
            raise ConnectionLostError(self.peer_id, self.close_reason)

    def _took(self, count: int) -> None:
        """The writer took ``count`` frames off the queue: wake who waits for them."""
        self._taken += count
        waiters = self._flush_waiters
        if waiters:
            taken = self._taken
            self._flush_waiters = [(m, f) for m, f in waiters if m > taken and not f.done()]
            for m, fut in waiters:
                if m <= taken and not fut.done():
                    fut.set_result(None)

    async def _send_chunked(
        self, msg: Message, buffers: Sequence[bytes | memoryview], n: int, *, borrowed: bool = False
    ) -> None:
        """Send a head frame, then the payload (``buffers``, ``n`` bytes) in ``chunk_size`` chunks.
        ``borrowed``: the buffers are the caller's objects; return only once the writer copied the
        last chunk, and abort the transfer when the caller stops waiting before that (the receiver
        then drops what it got, whatever the caller does with its objects afterwards)."""
        transfer = next(self._transfers)
        head = item(encode(msg, b"", transfer, n))
        await self._put(head, len(head[0]) + len(head[1]))
        step = self._cfg.chunk_size
        progress = msg.progress
        sent = False
        done = 0
        queued: list[tuple[Any, ...]] = []  # chunk frames that read the caller's buffers
        try:
            for pieces in split_chunks(buffers, step):
                size = sum(len(p) for p in pieces) if len(pieces) > 1 else len(pieces[0])
                prefix, total = chunk_header(transfer, size)
                frame: tuple[bytes | memoryview, ...] = (prefix, *pieces)
                await self._put(frame, total)
                if borrowed:
                    queued.append(frame)
                done += size
                if progress is not None:
                    report_progress(progress, "sent", done, n)
                await asyncio.sleep(0)  # let other senders' frames in between the chunks
            if borrowed:
                await self._taken_by_writer()
            sent = True
        finally:
            if not sent:  # cancelled or failed: tell the receiver to drop what it has of this transfer
                if queued:
                    self._withdraw(queued)
                abort = Envelope(type=F_CHUNK, transfer=transfer, reason="aborted")
                self.queue_control(abort.SerializeToString())

    def _kick(self) -> None:
        """A frame was queued: on an idle link whose traffic is one small frame at a time, start
        writing it here, in the sender's step (one event-loop hop less than waking the writer
        task); otherwise wake the writer task, which coalesces what is queued into one batch."""
        if (
            self._state is not _IDLE
            or self._defer
            or self._queued >= INLINE_PAYLOAD_MIN
            or self.closed
            or self._writer is None
            or len(self._queue) != 1
        ):
            if not self._wakeup.is_set():
                self._wakeup.set()
            return
        parts, size = self._queue.popleft()
        self._queued -= size
        self._taken += 1
        if self._flush_waiters:
            self._took(0)
        self._state = _DIRECT
        # Not a task the sender awaits: cancelling the sender must not cancel a write half-done.
        write = start_write(self._write(b"".join(parts)), self._direct_done, self._loop)
        if self._state is _DIRECT:  # still in flight (it may have ended already)
            self._direct_write = write

    def _direct_done(self, exc: BaseException | None) -> None:
        self._direct_write = None
        self._writes += 1
        # What was queued meanwhile is the writer task's; it also notices a final goodbye.
        self._state = _TASK if self._queue else _IDLE
        self._wakeup.set()
        if exc is not None and not self.closed:
            if isinstance(exc, asyncio.CancelledError):
                self._owner.lost(self, f"node {self.peer_id!r} cancelled the stream")
            else:
                self._owner.lost(self, f"stream to node {self.peer_id!r} broke while sending: {describe(exc)}")

    async def _write_loop(self) -> None:
        limit = self._cfg.max_batch_bytes
        queue = self._queue
        try:
            while True:
                while not queue or self._state is _DIRECT:
                    if self._final and not queue and self._state is not _DIRECT:
                        return
                    if self._state is not _DIRECT:
                        self._state = _IDLE
                    self._wakeup.clear()
                    await self._wakeup.wait()
                self._state = _TASK
                grant = None
                if self._write_budget is not None and self._queued >= INLINE_PAYLOAD_MIN:
                    # A large batch: wait for the node-wide budget of large writes in flight.
                    grant = await self._write_budget.take(limit)
                    if not queue:  # withdrawn meanwhile (a stopped send)
                        grant.release()
                        continue
                chunks: list[bytes | memoryview] = []
                parts, size = queue.popleft()
                chunks.extend(parts)
                taken = 1
                # Frames queued behind a write mean concurrent senders: until a batch of one frame
                # again, senders leave writing to this task, which coalesces them.
                self._defer = bool(queue)
                while queue and (size < limit):
                    parts, n = queue.popleft()
                    chunks.extend(parts)
                    size += n
                    taken += 1
                self._queued -= size
                data = b"".join(chunks)  # the one copy of a payload's buffers on this side
                del chunks
                self._took(taken)
                if self._waiters and self._queued < self._cfg.send_queue_bytes:
                    self._hand_over()
                try:
                    if data:  # empty: only frames of a stopped send (see _withdraw)
                        await self._write(data)
                finally:
                    # Not kept while this task waits for its next batch and the budget: N links
                    # waiting for it each held their last batch (a 16 MiB broadcast to 100: 26x P).
                    data = b""
                    if grant is not None:
                        grant.release()
                self._writes += 1
        except asyncio.CancelledError:
            if self.closed:
                raise
            self._owner.lost(self, f"node {self.peer_id!r} cancelled the stream")
        except Exception as exc:
            if not self.closed:
                self._owner.lost(self, f"stream to node {self.peer_id!r} broke while sending: {describe(exc)}")

    def _hand_over(self) -> None:
        """Room in the send queue: the first sender still waiting for it may queue its frame."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # not a sender cancelled while it waited
                fut.set_result(None)
                return

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if self.closed:
            flush, self._flush_waiters = self._flush_waiters, []
            for _, fut in flush:
                if not fut.done():
                    fut.set_result(None)

    # ------------------------------------------------------------------ inbound
    async def _read_loop(self) -> None:
        reason = f"node {self.peer_id!r} closed the stream"
        # Flow control: the node may ask to stop reading this peer for a while (its notify
        # handlers are at max_concurrent_notifies_per_peer). A host without it never pauses.
        paused = self._owner.reading_paused
        peer = self.peer_id
        try:
            while True:
                gate = paused(peer)
                if gate is not None:
                    await gate
                    continue
                data = await self._read()
                if data is aio.EOF or data is None:
                    break
                try:
                    frames = scan_batch(data) if len(data) >= SCAN_BATCH_MIN else Batch.FromString(data).frames
                except DecodeError:
                    reason = f"node {self.peer_id!r} sent a malformed frame"
                    self.status = (grpc.StatusCode.INVALID_ARGUMENT, "malformed frame (not a node_comm Batch)")
                    break
                del data
                for env in frames:
                    if self.closed:
                        return
                    if type(env) is tuple:
                        if type(env[0]) is int:  # a chunk, straight from the batch's bytes
                            self._on_chunk_data(env[0], env[1], False)
                        else:  # a frame whose payload was split off its envelope (scan_batch)
                            self._on_frame(env[0], env[1])
                    else:
                        self._on_frame(env)
                        if env.type == _NOTIFY_FRAME:
                            gate = paused(peer)
                            if gate is not None:  # the rest of this batch waits too
                                await gate
        except asyncio.CancelledError:
            if self.closed:
                raise
            # grpc.aio raises CancelledError from read() when the peer cancelled the RPC.
            reason = f"node {self.peer_id!r} cancelled the stream"
        except Exception as exc:
            reason = f"stream to node {self.peer_id!r} broke: {describe(exc)}"
        if not self.closed:
            self._owner.lost(self, reason)

    def _on_frame(self, env: Any, payload: bytes | None = None) -> None:
        """One frame; ``payload``: its payload when parsed apart from ``env`` (else ``env.payload``)."""
        ftype = env.type
        mtype = MESSAGE_TYPES.get(ftype)
        if mtype is not None:
            if env.transfer:
                self._begin_transfer(env, mtype)
                return
            if payload is None:
                payload = env.payload
            if len(payload) > self._cfg.max_payload_size:
                limit = self._cfg.max_payload_size
                self._refuse(
                    env,
                    mtype,
                    ErrorCode.RESOURCE_EXHAUSTED,
                    f"payload of {env.method or mtype.name} from {self.peer_id!r} is {len(payload)} "
                    f"bytes, over max_payload_size={limit} of node {self._node_id!r}",
                )
                return
            self._deliver(env, mtype, payload)
        elif ftype == F_CHUNK:
            self._on_chunk_data(env.transfer, env.payload if payload is None else payload, bool(env.reason))
        elif ftype == F_GOODBYE:
            self._owner.goodbye(self, env.reason or f"node {self.peer_id!r} said goodbye")
        elif ftype == F_PROBE:
            self.queue_control(_PROBE_ACK)
        elif ftype == F_PROBE_ACK:
            if self._probe is not None and not self._probe.done():
                self._probe.set_result(None)
        else:
            self._bad_frame(f"unknown frame type {ftype}", env.id)

    def _bad_frame(self, text: str, reply_to: int | None = None) -> None:
        """Count a malformed or unknown frame; answer it (``reply_to``: the id to answer) or, past
        ``MAX_BAD_FRAMES``, close the stream."""
        self._bad += 1
        if self._bad > MAX_BAD_FRAMES:
            reason = (
                f"node {self.peer_id!r} sent {self._bad} malformed or unknown frames "
                f"(the last: {text}); its stream is closed"
            )
            self._rlog.warning(("bad-frames", self.peer_id), "%s: %s", self._node_id, reason)
            self.status = (grpc.StatusCode.INVALID_ARGUMENT, reason)
            self._owner.lost(self, reason)
            return
        if self._bad == 1:
            self._rlog.warning(("bad-frame", self.peer_id), "%s: %s from %r", self._node_id, text, self.peer_id)
        if reply_to is not None:
            self.queue_control(error_frame(reply_to, ErrorCode.INVALID_ARGUMENT.value, text).SerializeToString())

    def _deliver(self, env: Any, mtype: MessageType, payload: bytes | bytearray) -> None:
        err = None
        if env.HasField("error"):
            e = env.error
            err = ErrorInfo(e.code, e.message, e.traceback if e.HasField("traceback") else None)
        # A reassembled payload is the bytearray it was copied into: serializers take any buffer.
        msg = Message(
            env.id,
            mtype,
            self.peer_id,
            self._node_id,
            env.method,
            payload,  # type: ignore[arg-type]  # a bytearray when reassembled: serializers take any buffer
            env.serializer,
            dict(env.metadata) if env.metadata else {},
            err,
            env.deadline if env.HasField("deadline") else None,
        )
        try:
            self._owner.deliver(msg)
        except Exception:
            self._rlog.exception(
                ("deliver", self.peer_id), "%s: deliver failed for a message from %r", self._node_id, self.peer_id
            )

    def _refuse(self, env: Any, mtype: MessageType, code: ErrorCode, text: str, *, logged: bool = False) -> None:
        """Answer a message that will not be delivered: an error to the peer for a request, to the
        local caller for a reply, a log line for the rest."""
        if mtype is _REQUEST:
            self.queue_control(error_frame(env.id, code.value, text, env.method).SerializeToString())
        elif mtype is _RESPONSE or mtype is _ERROR:
            self._deliver(error_frame(env.id, code.value, text, env.method), _ERROR, b"")
        elif not logged:
            self._rlog.warning(("dropped", self.peer_id), "%s: dropped %r", self._node_id, text)

    def _remember_dropped(self, transfer: int, left: int) -> None:
        """Skip the ``left`` bytes still to come of a refused or dropped transfer, quietly."""
        dropped = self._dropped
        if left <= 0:
            return
        if len(dropped) >= MAX_DROPPED:  # forget the oldest: its chunks are then merely unknown
            del dropped[next(iter(dropped))]
        dropped[transfer] = left

    def _begin_transfer(self, env: Any, mtype: MessageType) -> None:
        transfer = env.transfer
        total = env.total_size
        what = env.method or mtype.name
        if transfer in self._partials or transfer in self._dropped:
            self._bad_frame(f"transfer id {transfer} reused while in progress")
            self._refuse(
                env,
                mtype,
                ErrorCode.INVALID_ARGUMENT,
                f"payload of {what} from {self.peer_id!r} reuses transfer id {transfer}, still in progress",
            )
            return
        limit = self._cfg.max_payload_size
        budget = self._budget
        if total > limit:
            text = (
                f"payload of {what} from {self.peer_id!r} is {total} bytes, over "
                f"max_payload_size={limit} of node {self._node_id!r}"
            )
        elif not budget.take(total):
            text = (
                f"node {self._node_id!r} is already receiving {budget.used} bytes of large payloads; "
                f"{total} more (of {what} from {self.peer_id!r}) would pass max_receive_buffer="
                f"{budget.limit}"
            )
        else:
            now = self._loop.time()
            self._partials[transfer] = Partial(env, total, now)
            if total == 0:
                self._finish(transfer)
            elif self._sweep is None:
                self._sweep = self._loop.call_at(now + self._cfg.transfer_timeout, self._drop_stalled)
            return
        self._remember_dropped(transfer, total)
        self._refuse(env, mtype, ErrorCode.RESOURCE_EXHAUSTED, text)

    def _on_chunk_data(self, transfer: int, data: bytes | memoryview, aborted: bool) -> None:
        part = self._partials.get(transfer)
        if part is None:  # refused, dropped or unknown: skipped
            left = self._dropped.get(transfer)
            if left is not None:
                left -= len(data)
                if left <= 0 or aborted:
                    del self._dropped[transfer]
                else:
                    self._dropped[transfer] = left
            return
        if aborted:  # the sender aborted this transfer
            del self._partials[transfer]
            self._budget.give(part.total)
            return
        if part.got + len(data) > part.total:  # more than announced: refuse it whole
            del self._partials[transfer]
            self._budget.give(part.total)
            env = part.env
            text = (
                f"chunked payload of {env.method or MESSAGE_TYPES[env.type].name} from {self.peer_id!r} "
                f"has more bytes than the {part.total} announced"
            )
            self._bad_frame(text)
            self._refuse(env, MESSAGE_TYPES[env.type], ErrorCode.INVALID_ARGUMENT, text)
            return
        part.add(data)
        part.last = self._loop.time()
        env = part.env
        self._owner.transfer_progress(self.peer_id, env.id, MESSAGE_TYPES[env.type], env.method, part.got, part.total)
        if part.got == part.total:
            self._finish(transfer)

    def _finish(self, transfer: int) -> None:
        part = self._partials.pop(transfer)
        self._budget.give(part.total)
        env = part.env
        self._deliver(env, MESSAGE_TYPES[env.type], part.payload())

    def _drop_stalled(self) -> None:
        """Drop the transfers that got no chunk for ``transfer_timeout``, freeing their budget;
        re-armed while transfers are in progress."""
        self._sweep = None
        if self.closed:
            return
        timeout = self._cfg.transfer_timeout
        now = self._loop.time()
        due: float | None = None
        for transfer, part in list(self._partials.items()):
            if now - part.last < timeout:
                due = part.last if due is None else min(due, part.last)
                continue
            del self._partials[transfer]
            self._budget.give(part.total)
            self._remember_dropped(transfer, part.total - part.got)
            env = part.env
            mtype = MESSAGE_TYPES[env.type]
            text = (
                f"chunked payload of {env.method or mtype.name} from {self.peer_id!r} stalled: no chunk "
                f"for {timeout:g}s after {part.got} of {part.total} bytes (transport.grpc.transfer_timeout)"
            )
            self._rlog.warning(("stalled", self.peer_id), "%s: dropped %r", self._node_id, text)
            part.buf = None
            self._refuse(env, mtype, ErrorCode.DEADLINE_EXCEEDED, text, logged=True)
        if due is not None:
            self._sweep = self._loop.call_at(due + timeout, self._drop_stalled)

    async def probe(self, timeout: float) -> bool:
        """Whether the peer answers a liveness probe on this link within ``timeout`` seconds."""
        if self.closed:
            return False
        if self._probe is None or self._probe.done():
            self._probe = self._loop.create_future()
            self.queue_control(_PROBE)
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), timeout)
        except asyncio.TimeoutError:
            return False
        return not self.closed

    # ------------------------------------------------------------------ closing
    def close(self, reason: str, *, goodbye: bool) -> asyncio.Task[None] | None:
        """Mark closed and tear the stream down in the background (after a goodbye frame when
        ``goodbye``). Returns the teardown task, or ``None`` when already closed."""
        if self.closed:
            return None
        self.closed = True
        self.close_reason = reason
        if self._probe is not None and not self._probe.done():
            self._probe.set_result(None)  # probe() sees the link closed: not alive
        for part in self._partials.values():  # the node-wide budget they hold is free again
            self._budget.give(part.total)
        self._partials.clear()
        self._dropped.clear()
        for handle in (self._sweep, self._stall):
            if handle is not None:
                handle.cancel()
        self._sweep = self._stall = None
        self._wake_waiters()
        return self._owner.spawn(self._teardown(reason if goodbye else None))

    async def _teardown(self, goodbye: str | None) -> None:
        grace = self._cfg.stop_grace
        writer = self._writer
        try:
            if writer is not None and not writer.done():
                # Let the writer finish the write in flight (with a goodbye after it, if any) and
                # end, rather than cancelling it mid-write: a server stream whose handler returns
                # with a write pending can never finish its call (grpc: TOO_MANY_OPERATIONS).
                self._queue.clear()
                self._queued = 0
                if goodbye is not None:
                    parts = item(Envelope(type=F_GOODBYE, reason=goodbye).SerializeToString())
                    self._queue.append((parts, len(parts[0]) + len(parts[1])))
                self._final = True
                self._wakeup.set()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(writer), grace)
            if goodbye is not None and writer is not None:
                if self._call is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(self._call.done_writing(), grace)
                    if self._reader is not None and self._reader is not asyncio.current_task():
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await asyncio.wait_for(asyncio.shield(self._reader), grace)
        finally:
            current = asyncio.current_task()
            for task in (self._writer, self._reader):
                if task is not None and task is not current and not task.done():
                    task.cancel()
            if self._call is not None:
                self._call.cancel()
            if not self.finished.done():
                self.finished.set_result(None)
            if self._channel is not None:
                with contextlib.suppress(Exception):
                    await self._channel.close(grace=None)


#: What a gRPC status means for a node_comm stream, for statuses whose details are not for users.
_STATUS_TEXT = {
    grpc.StatusCode.UNAVAILABLE: "the connection was closed or reset (the peer stopped, was killed or is unreachable)",
    grpc.StatusCode.INTERNAL: "the connection was reset (the peer was killed, or the network dropped it)",
    grpc.StatusCode.CANCELLED: "the stream was cancelled",
    grpc.StatusCode.UNKNOWN: "the stream failed for a reason gRPC did not give",
    grpc.StatusCode.DEADLINE_EXCEEDED: "gRPC's deadline passed",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "a gRPC limit was reached (message size or concurrent streams)",
}
#: Marks of text from gRPC's internals, not for users: object reprs, Cython modules, the C core.
_INTERNALS = ("0x", "cygrpc", "_cython", "Core", "execute_batch", "ExecuteBatchError", "<grpc")


def _internal(text: str) -> bool:
    return any(mark in text for mark in _INTERNALS)


def describe(exc: BaseException) -> str:
    """A short, human text of why a stream or call failed: the gRPC status and its details, or
    what the status means when its details are gRPC internals (``Internal error from Core``, object
    reprs of Cython operations); never a repr of gRPC's objects."""
    if isinstance(exc, aio.AioRpcError):
        code = exc.code()
        details = exc.details() or ""
        if details and not _internal(details):
            return f"{code.name}: {details}"
        return f"{code.name}: {_STATUS_TEXT.get(code, 'the stream failed')}"
    text = f"{type(exc).__name__}: {exc}"
    if type(exc).__module__.startswith("grpc") or _internal(text):
        # grpc.aio's UsageError/InternalError, cygrpc's ExecuteBatchError: a write on a stream
        # that the peer or the network closed under it.
        return "the connection was closed or reset while writing (the peer was killed or the network dropped it)"
    return text
