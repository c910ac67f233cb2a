"""The outbound call table: every call this node is waiting on, its deadline timer, and how it
ends (its reply, its deadline, the loss of its peer, or the node stopping)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ._timers import Entry
from .exceptions import CallTimeoutError, ConnectionLostError, NodeNotConnectedError
from .message import Message, MessageType, ProgressCallback, report_progress
from .runtime import Runtime

_CANCEL = MessageType.CANCEL


class Outcome(Protocol):
    """Where a call's reply or error goes: the caller's Future, or a broadcast's :class:`_Slot`."""

    def done(self) -> bool: ...
    def set_result(self, result: Message, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class _Batch:
    """The outcomes of one broadcast: a list filled as replies arrive and one Future, done with the
    last of them (no Future, callback and gather per target)."""

    __slots__ = ("future", "left", "results")

    def __init__(self, n: int, future: asyncio.Future[None]) -> None:
        self.results: list[Message | BaseException | None] = [None] * n
        self.left = n
        self.future = future


class _Slot:
    """One target's outcome inside a :class:`_Batch` (what a Future is for a single call)."""

    __slots__ = ("_batch", "_done", "_index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self._batch = batch
        self._index = index
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Message | BaseException, /) -> None:
        if self._done:
            return
        self._done = True
        batch = self._batch
        batch.results[self._index] = result
        batch.left -= 1
        if batch.left == 0 and not batch.future.done():
            batch.future.set_result(None)

    set_exception = set_result


@dataclass(slots=True)
class Pending:
    """One call waiting for its reply."""

    future: Outcome
    target: str
    method: str
    timeout: float | None
    timer: Entry | None = None
    #: The caller's task while it is inside ``transport.send`` (see :meth:`OutboundCalls._stop_sending`).
    sending: asyncio.Task[Any] | None = None
    stopped: bool = False
    #: ``progress("received", done, total)`` of the reply, when the caller asked for progress.
    progress: ProgressCallback | None = None


def _uncancel(task: asyncio.Task[Any]) -> int:
    """Withdraw one cancellation request of ``task``; the requests left (0 on Python 3.10)."""
    uncancel = getattr(task, "uncancel", None)
    return int(uncancel()) if uncancel is not None else 0


class OutboundCalls:
    """Sends requests and waits for their replies. ``connected`` is the peer table's dict: a call
    to a node not in it fails at once."""

    def __init__(self, rt: Runtime, connected: dict[str, Any]) -> None:
        self._rt = rt
        self._connected = connected
        self.pending: dict[int, Pending] = {}
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        """A fresh message id (unique per node)."""
        return next(self._ids)

    async def request_within(self, deadline: float | None, msg: Message) -> Message:
        """Terminal of the outbound interceptor chain: the time interceptors took counts against the
        call's deadline, and the deadline sent is what is left of it."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeoutError(msg.target, msg.method, msg.deadline)
            msg.deadline = left
        return await self.request(msg)

    async def request(self, msg: Message) -> Message:
        """Send ``msg``, then wait for the reply, the deadline or the loss of the peer."""
        if msg.target not in self._connected:
            raise NodeNotConnectedError(msg.target)
        rt = self._rt
        loop = rt.loop
        timers = rt.timers
        assert loop is not None and timers is not None
        fut: asyncio.Future[Message] = loop.create_future()
        pend = Pending(fut, msg.target, msg.method, msg.deadline, progress=msg.progress)
        call_id = msg.id
        if msg.deadline is not None:
            pend.timer = timers.call_at(loop.time() + msg.deadline, self._expire, call_id)
        self.pending[call_id] = pend
        try:
            task = pend.sending = asyncio.current_task(loop)  # loop given: no lookup of it
            try:
                await rt.transport.send(msg)
            except asyncio.CancelledError:
                # Stopped by the deadline or an early reply (_stop_sending): the unsent rest is
                # abandoned and the outcome is in ``fut``. Any other cancellation goes on.
                if not pend.stopped or task is None or _uncancel(task) > 0:
                    raise
            except NodeNotConnectedError:
                # The peer was lost while sending: the call's outcome (ConnectionLostError) is in
                # ``fut`` already; raise that one, so that it is retrieved.
                if not fut.done():
                    raise
            finally:
                pend.sending = None
            return await fut
        except asyncio.CancelledError:
            if call_id in self.pending and msg.target in self._connected:
                self._send_cancel(msg.target, call_id)
            raise
        finally:
            done = self.pending.pop(call_id, None)
            if done is not None and done.timer is not None:
                timers.cancel(done.timer)

    async def request_many(self, msgs: list[Message]) -> list[Message | BaseException]:
        """Send one broadcast's requests with one ``transport.send_many`` (a broker transport
        publishes the payload once), then wait for each reply; each target's reply, error or
        timeout is its own, as with :meth:`request`. The requests share one deadline: one timer
        and one Future serve them all."""
        rt = self._rt
        loop, timers = rt.loop, rt.timers
        assert loop is not None and timers is not None
        batch = _Batch(len(msgs), loop.create_future())
        pending = self.pending
        for index, msg in enumerate(msgs):
            pending[msg.id] = Pending(_Slot(batch, index), msg.target, msg.method, msg.deadline, progress=msg.progress)
        deadline = msgs[0].deadline if msgs else None
        timer = None
        if deadline is not None:
            assert all(m.deadline == deadline for m in msgs), "a broadcast's requests share one deadline"
            timer = timers.call_at(loop.time() + deadline, self._expire_many, [m.id for m in msgs])
        # The sends run beside the wait: a target that stops reading must not hold the others'
        # results past their deadlines (the unsent rest is abandoned when every outcome is in).
        sender = asyncio.ensure_future(rt.transport.send_many(msgs))

        def sent(task: asyncio.Future[list[BaseException | None]]) -> None:
            if task.cancelled():
                return
            exc = task.exception()
            errors = [exc] * len(msgs) if exc is not None else task.result()
            for msg, err in zip(msgs, errors, strict=True):
                if err is not None:
                    failed = pending.pop(msg.id, None)
                    if failed is not None:
                        self._fail(failed, err)

        sender.add_done_callback(sent)
        try:
            if msgs:
                await batch.future
            return batch.results  # type: ignore[return-value]  # every slot is filled
        except asyncio.CancelledError:
            for msg in msgs:
                if msg.id in pending and msg.target in self._connected:
                    self._send_cancel(msg.target, msg.id)
            raise
        finally:
            if not sender.done():
                sender.cancel()
            if timer is not None:
                timers.cancel(timer)
            for msg in msgs:
                pending.pop(msg.id, None)

    def resolve(self, message: Message) -> None:
        """A RESPONSE or ERROR arrived. The caller (:meth:`request`) removes the entry and its timer;
        a late reply to a call that timed out or was cancelled finds nothing."""
        pend = self.pending.get(message.id)
        if pend is not None and pend.target == message.source and not pend.future.done():
            pend.future.set_result(message)
            if pend.sending is not None:  # answered before its request was all sent
                self._stop_sending(pend)

    def received(self, peer_id: str, call_id: int, done: int, total: int) -> None:
        """Part of the reply to ``call_id`` arrived: tell the caller's progress callback."""
        pend = self.pending.get(call_id)
        if pend is not None and pend.progress is not None and pend.target == peer_id:
            report_progress(pend.progress, "received", done, total)

    def fail_peer(self, peer_id: str, reason: str) -> None:
        """The link to ``peer_id`` is gone: its calls fail now, not at their deadlines."""
        for call_id, pend in list(self.pending.items()):
            if pend.target == peer_id:
                del self.pending[call_id]
                self._fail(pend, ConnectionLostError(peer_id, reason))

    def close(self, exc: BaseException) -> None:
        """The node stops: every call still waiting fails with ``exc``."""
        for call_id in list(self.pending):
            self._fail(self.pending.pop(call_id), exc)

    def _expire(self, call_id: int) -> None:
        pend = self.pending.pop(call_id, None)
        if pend is None:
            return
        self._fail(pend, CallTimeoutError(pend.target, pend.method, pend.timeout))
        if pend.sending is not None:
            self._stop_sending(pend)
        if pend.target in self._connected:
            self._send_cancel(pend.target, call_id)

    def _expire_many(self, call_ids: list[int]) -> None:
        for call_id in call_ids:
            self._expire(call_id)

    def _stop_sending(self, pend: Pending) -> None:
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

    def _fail(self, pend: Pending, exc: BaseException) -> None:
        timers = self._rt.timers
        if pend.timer is not None and timers is not None:
            timers.cancel(pend.timer)
        if not pend.future.done():
            pend.future.set_exception(exc)

    def _send_cancel(self, target: str, call_id: int) -> None:
        rt = self._rt
        rt.spawn(rt.send_quiet(Message(call_id, _CANCEL, rt.node_id, target)))
