"""What a node sends: a payload encoded (inline, or off the loop when large), the outbound
interceptors, the request handed to the call table, and the reply decoded within this node's
limits (or turned into the error it stands for)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._offload import large_encoder, looks_large
from .calls import OutboundCalls
from .context import CallContext, current_deadline
from .exceptions import (
    CallTimeoutError,
    ErrorCode,
    NodeCommError,
    NodeNotConnectedError,
    PayloadTooLargeError,
    RemoteExecutionError,
    SerializationError,
)
from .interceptor import InterceptorChain
from .message import ErrorInfo, Message, MessageType, PartsMessage, PayloadParts, ProgressCallback
from .peers import Peer
from .runtime import Runtime
from .serializer import Serializer, SerializerRegistry

if TYPE_CHECKING:
    from .node import Node

_REQUEST = MessageType.REQUEST
_NOTIFY = MessageType.NOTIFY
_ERROR = MessageType.ERROR

#: A broadcast's progress callback: ``progress(target, direction, done, total)``.
BroadcastProgress = Callable[[str, str, int, int], None]


def _per_target(progress: BroadcastProgress | None, target: str) -> ProgressCallback | None:
    """A broadcast's progress callback bound to one target."""
    return None if progress is None else functools.partial(progress, target)


class Outbound:
    """Calls, notifies and broadcasts of one node."""

    def __init__(
        self,
        node: Node,
        rt: Runtime,
        serializers: SerializerRegistry,
        chain: InterceptorChain,
        calls: OutboundCalls,
        peers: dict[str, Peer],
    ) -> None:
        self._node = node
        self._rt = rt
        self._serializers = serializers
        self._chain = chain
        self._calls = calls
        self._peers = peers

    def choose(
        self, targets: Iterable[str] | None, exclude: Iterable[str] | None
    ) -> tuple[list[str], list[str], dict[str, NodeNotConnectedError]]:
        """A broadcast's targets: all of them (every connected peer, or ``targets``) but ``exclude``,
        those connected, and an error for each one that is not."""
        skip: set[str] | frozenset[str]
        if isinstance(exclude, (set, frozenset)):
            skip = exclude
        else:
            skip = {exclude} if isinstance(exclude, str) else set(exclude or ())
        if targets is None:
            chosen = [p for p in self._peers if p not in skip]
        else:
            chosen = [p for p in dict.fromkeys([targets] if isinstance(targets, str) else targets) if p not in skip]
        absent = {t: NodeNotConnectedError(t) for t in chosen if t not in self._peers}
        return chosen, [t for t in chosen if t not in absent], absent

    # ------------------------------------------------------------------ encoding
    def encode(self, serializer: str | None, payload: Any, target: str, method: str) -> tuple[Serializer, bytes]:
        """Encode a small payload inline (callers check :meth:`is_large` first)."""
        ser = self._serializers.get(serializer or "json")
        try:
            return ser, ser.serialize(payload)
        except Exception as exc:
            raise _encode_error(ser, target, method, exc) from exc

    async def encode_in_thread(
        self, serializer: str | None, payload: Any, target: str, method: str
    ) -> tuple[Serializer, bytes | PayloadParts]:
        """Encode a large payload in the codec pool, off the event loop: as buffers the transport
        sends without joining them, when it can (see :func:`~node_comm._offload.large_encoder`)."""
        ser = self._serializers.get(serializer or "json")
        try:
            if ser.constant_time:  # e.g. raw: a thread hop would cost more than the encoding
                return ser, ser.serialize(payload)
            return ser, await self._rt.in_thread(large_encoder(ser, self._rt.transport), payload)
        except Exception as exc:
            raise _encode_error(ser, target, method, exc) from exc

    def is_large(self, payload: Any) -> bool:
        return looks_large(payload, self._rt.config.offload_threshold)

    def _remaining(self, timeout: float | None, target: str, method: str) -> float | None:
        """The call's time budget: ``timeout`` (or the default), within an inherited deadline."""
        budget = self._rt.config.default_timeout if timeout is None else timeout
        inherited = current_deadline.get()
        remaining: float | None = budget
        if inherited is not None:
            left = inherited - time.monotonic()
            remaining = left if remaining is None else min(remaining, left)
        if remaining is not None and remaining <= 0:
            raise CallTimeoutError(target, method, budget if budget is not None else 0.0)
        return remaining

    def context(self, msg: Message, deadline: float | None, notify: bool) -> CallContext:
        """What outbound interceptors see of ``msg``."""
        peer = self._peers.get(msg.target)
        return CallContext(
            self._node,
            self._rt.node_id,
            msg.target,
            msg.method,
            "outbound",
            msg.metadata,
            deadline,
            msg.id,
            notify,
            None if peer is None else peer.identity,
        )

    # ------------------------------------------------------------------ calls
    async def call_encoded(
        self,
        target: str,
        method: str,
        ser: Serializer,
        data: bytes | PayloadParts,
        timeout: float | None,
        metadata: dict[str, str] | None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """``call()`` once the payload is encoded (``broadcast`` encodes once for every target)."""
        remaining = self._remaining(timeout, target, method)
        calls = self._calls
        msg = (Message if type(data) is not PayloadParts else PartsMessage)(
            calls.next_id(),
            _REQUEST,
            self._rt.node_id,
            target,
            method,
            data,  # type: ignore[arg-type]  # PayloadParts: a PartsMessage
            ser.name,
            dict(metadata) if metadata else {},
            None,
            remaining,
            progress,
        )
        if self._chain:
            ctx = self.context(msg, None if remaining is None else time.monotonic() + remaining, False)
            terminal = functools.partial(calls.request_within, ctx.deadline)
            reply = await self._chain.outbound(msg, ctx, terminal)
            if reply is None:
                raise NodeCommError(f"an interceptor swallowed the reply of {target}.{method}")
        else:
            reply = await calls.request(msg)
        if len(reply.payload) < self._rt.config.offload_threshold:  # no coroutine for a small reply
            return self.decode_inline(reply, target, method, ser)
        return await self.decode_reply(reply, target, method, ser)

    async def decode_reply(self, reply: Message, target: str, method: str, ser: Serializer) -> Any:
        """The result a reply carries (decoded within this node's limits, in the codec pool when
        large), or the error it stands for."""
        config = self._rt.config
        data = reply.payload
        if len(data) < config.offload_threshold or ser.constant_time:
            return self.decode_inline(reply, target, method, ser)
        _check_reply(reply, target, method, ser)
        try:
            return await self._rt.in_thread(ser.deserialize_bounded, data, config.decode_limits)
        except Exception as exc:
            raise _decode_error(ser, target, method, exc) from (None if isinstance(exc, PayloadTooLargeError) else exc)

    def decode_inline(self, reply: Message, target: str, method: str, ser: Serializer) -> Any:
        """:meth:`decode_reply` of a small reply, on the loop."""
        _check_reply(reply, target, method, ser)
        try:
            return ser.deserialize_bounded(reply.payload, self._rt.config.decode_limits)
        except Exception as exc:
            raise _decode_error(ser, target, method, exc) from (None if isinstance(exc, PayloadTooLargeError) else exc)

    async def notify_encoded(
        self, target: str, method: str, ser: Serializer, data: bytes | PayloadParts, metadata: dict[str, str] | None
    ) -> None:
        """``notify()`` once the payload is encoded."""
        msg = (Message if type(data) is not PayloadParts else PartsMessage)(
            self._calls.next_id(),
            _NOTIFY,
            self._rt.node_id,
            target,
            method,
            data,  # type: ignore[arg-type]  # PayloadParts: a PartsMessage
            ser.name,
            dict(metadata) if metadata else {},
        )
        if self._chain:
            await self._chain.outbound(msg, self.context(msg, None, True), self._send)
        else:
            await self._rt.transport.send(msg)

    async def _send(self, msg: Message) -> None:
        await self._rt.transport.send(msg)

    async def broadcast_encoded(
        self,
        targets: list[str],
        method: str,
        ser: Serializer,
        data: bytes | PayloadParts,
        timeout: float | None,
        metadata: dict[str, str] | None,
        progress: BroadcastProgress | None,
    ) -> list[Any]:
        """One call per target, concurrently; each result or error is that target's own. Without
        interceptors one ``transport.send_many`` hands the request to every target (a broker
        transport publishes the payload once); interceptors see each call on its own."""
        if self._chain or len(targets) < 2:
            return await asyncio.gather(
                *(
                    self.call_encoded(t, method, ser, data, timeout, metadata, _per_target(progress, t))
                    for t in targets
                ),
                return_exceptions=True,
            )
        try:
            remaining = self._remaining(timeout, "<broadcast>", method)
        except CallTimeoutError as exc:
            return [CallTimeoutError(t, method, exc.timeout) for t in targets]
        calls = self._calls
        cls = Message if type(data) is not PayloadParts else PartsMessage
        msgs = [
            cls(
                calls.next_id(),
                _REQUEST,
                self._rt.node_id,
                t,
                method,
                data,  # type: ignore[arg-type]  # PayloadParts: a PartsMessage
                ser.name,
                dict(metadata) if metadata else {},
                None,
                remaining,
                _per_target(progress, t),
            )
            for t in targets
        ]
        results: list[Any] = []
        for target, reply in zip(targets, await calls.request_many(msgs), strict=True):
            if isinstance(reply, BaseException):
                results.append(reply)
                continue
            try:
                results.append(await self.decode_reply(reply, target, method, ser))
            except NodeCommError as exc:
                results.append(exc)
        return results


def _check_reply(reply: Message, target: str, method: str, ser: Serializer) -> None:
    """Raise the error an ERROR reply stands for, or refuse a reply in another serializer."""
    if reply.type is _ERROR:
        err = reply.error or ErrorInfo(ErrorCode.INTERNAL.value, "remote error without details")
        raise RemoteExecutionError(err.message, err.code, err.traceback, target=target, method=method)
    if reply.serializer != ser.name:
        raise SerializationError(
            f"{target}.{method} answered in serializer {reply.serializer!r}, expected {ser.name!r}; refusing to decode"
        )


def _decode_error(ser: Serializer, target: str, method: str, exc: Exception) -> NodeCommError:
    """What a reply that cannot be decoded raises: a refusal within the limits stays one."""
    if isinstance(exc, PayloadTooLargeError):
        return PayloadTooLargeError(f"the result of {target}.{method} was refused undecoded: {exc.message}")
    return SerializationError(f"cannot decode the result of {target}.{method} with serializer {ser.name!r}: {exc}")


def _encode_error(ser: Serializer, target: str, method: str, exc: Exception) -> SerializationError:
    return SerializationError(f"cannot encode the payload of {target}.{method} with serializer {ser.name!r}: {exc}")
