"""The inbound dispatcher: the method table, and what happens to a call this node serves — the
interceptors, the checks (method, caller's authentication, serializer), decoding within the
limits, running the handler, encoding its result, and mapping every failure to an error code."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import TYPE_CHECKING, Any

from ._offload import large_encoder, looks_large
from .config import MethodOptions
from .context import CallContext, current_deadline
from .exceptions import CallRejectedError, ConfigError, ErrorCode, NodeCommError, PayloadTooLargeError
from .interceptor import InterceptorChain
from .message import ErrorInfo, Message, MessageType, PartsMessage, PayloadParts
from .runtime import Runtime
from .serializer import SerializerRegistry
from .watchdog import handler_code

if TYPE_CHECKING:
    from .node import Node

Handler = Callable[[Any, CallContext], Any]

_REQUEST = MessageType.REQUEST
_NOTIFY = MessageType.NOTIFY
_RESPONSE = MessageType.RESPONSE
_ERROR = MessageType.ERROR


@dataclass(slots=True)
class Method:
    """A registered method."""

    name: str
    handler: Handler
    serializer: str
    is_async: bool
    authenticated_only: bool = False


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


class InboundDispatcher:
    """Serves the calls and notifies that reach ``node``."""

    def __init__(self, node: Node, rt: Runtime, serializers: SerializerRegistry, chain: InterceptorChain) -> None:
        self._node = node
        self._rt = rt
        self._serializers = serializers
        self._chain = chain
        self.methods: dict[str, Method] = {}

        async def heartbeat(payload: Any, ctx: CallContext) -> dict[str, str]:
            return {"status": "alive", "node_id": rt.node_id}

        self.register_framework("_heartbeat", heartbeat)

    # ------------------------------------------------------------------ method table
    def register(self, name: str, handler: Handler, options: MethodOptions | None, replace: bool) -> None:
        """See :meth:`Node.register`."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"method name must be a non-empty string, got {name!r}")
        if name.startswith("_"):
            raise ConfigError(f"method name {name!r} is reserved: names starting with '_' are the framework's")
        self._add(name, handler, options, replace)

    def register_framework(self, name: str, handler: Handler) -> None:
        """A method of the framework's own (``_heartbeat``, ...)."""
        self._add(name, handler, None, True)

    def _add(self, name: str, handler: Handler, options: MethodOptions | None, replace: bool) -> None:
        if not callable(handler):
            raise ConfigError(f"handler for {name!r} must be callable, got {type(handler).__name__}")
        options = options or MethodOptions()
        if not isinstance(options, MethodOptions):
            raise ConfigError(f"options for {name!r} must be a MethodOptions, got {type(options).__name__}")
        ser = self._serializers.get(options.serializer)  # unknown serializer: ConfigError now
        if name in self.methods and not replace:
            raise ConfigError(f"method {name!r} is already registered; pass replace=True to replace it")
        authenticated_only = options.authenticated_only
        if authenticated_only is None:
            authenticated_only = ser.name == "pickle" or bool(getattr(ser, "requires_authentication", False))
        self.methods[name] = Method(name, handler, options.serializer, _is_async_callable(handler), authenticated_only)

    def handler_codes(self) -> dict[CodeType, str]:
        """Code object of each handler -> its method name (for the loop watchdog)."""
        out: dict[CodeType, str] = {}
        for m in list(self.methods.values()):
            code = handler_code(m.handler)
            if code is not None:
                out[code] = m.name
        return out

    def unregister(self, name: str) -> None:
        """See :meth:`Node.unregister`."""
        if name.startswith("_") or self.methods.pop(name, None) is None:
            raise ConfigError(f"method {name!r} is not registered")

    # ------------------------------------------------------------------ serving
    async def serve(self, msg: Message, deadline: float | None, identity: str | None) -> None:
        """Serve one request or notify from a connected peer (``identity``: how it was
        authenticated), and send the reply of a request."""
        rt = self._rt
        current_deadline.set(deadline)
        ctx = CallContext(
            self._node,
            msg.source,
            rt.node_id,
            msg.method,
            "inbound",
            msg.metadata,
            deadline,
            msg.id,
            msg.type is _NOTIFY,
            identity,
        )
        try:
            if self._chain:
                reply = await self._chain.inbound(msg, ctx, functools.partial(self.dispatch, ctx))
            else:
                reply = await self.dispatch(ctx, msg)
        except asyncio.CancelledError:
            if deadline is not None and time.monotonic() >= deadline and msg.type is _REQUEST:
                self.reply_error(msg, ErrorCode.DEADLINE_EXCEEDED, f"{rt.node_id}.{msg.method} exceeded its deadline")
            return
        except NodeCommError as exc:
            reply = self.error_message(msg, exc.code, exc.message)
        except Exception as exc:
            rt.rlog.exception(
                ("interceptor", msg.source), "%s: interceptor failed on %r from %r", rt.node_id, msg.method, msg.source
            )
            reply = self.error_message(msg, ErrorCode.INTERNAL, f"interceptor failed: {exc!r}", traceback.format_exc())
        if reply is None:
            return
        if msg.type is _REQUEST:
            await rt.send_quiet(reply)
        elif reply.error is not None:  # a notify has nobody to tell but the log
            rt.rlog.warning(
                ("notify", msg.source),
                "%s: notify %r from %r failed [%s]: %r",
                rt.node_id,
                msg.method,
                msg.source,
                reply.error.code,
                reply.error.message,
            )

    async def dispatch(self, ctx: CallContext, msg: Message) -> Message | None:
        """Terminal of the inbound chain: check, decode, run the handler, encode its result."""
        rt = self._rt
        config = rt.config
        method = self.methods.get(msg.method)
        if method is None:
            text = f"node {rt.node_id!r} has no method {msg.method!r}"
            if config.debug or ctx.authenticated:  # never show an unknown caller what is served
                public = [m for m in self.methods if not m.startswith("_")]
                text += f"; registered: {', '.join(sorted(public)) or 'none'}"
            raise CallRejectedError(ErrorCode.METHOD_NOT_FOUND, text)
        if method.authenticated_only and not ctx.authenticated:
            raise CallRejectedError(
                ErrorCode.PERMISSION_DENIED,
                f"method {msg.method!r} of node {rt.node_id!r} accepts calls only from authenticated "
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
            ser = self._serializers.get(method.serializer)
        except ConfigError as exc:
            raise CallRejectedError(ErrorCode.INTERNAL, str(exc)) from None
        data = msg.payload
        try:
            if len(data) >= config.offload_threshold and not ser.constant_time:
                payload = await rt.in_thread(ser.deserialize_bounded, data, config.decode_limits)
            else:
                payload = ser.deserialize_bounded(data, config.decode_limits)
        except PayloadTooLargeError as exc:
            raise CallRejectedError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"node {rt.node_id!r} refused the payload of {msg.method!r} undecoded: {exc.message}",
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
                run: Callable[..., Any] = contextvars.copy_context().run
                result = await rt.run_handler(method.name, run, method.handler, payload, ctx)
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            if _task_is_cancelled():
                raise
            # The handler raised CancelledError without being cancelled (it awaited something
            # that was): answer, or the caller would wait for its whole timeout.
            return self.error_message(
                msg,
                ErrorCode.HANDLER_ERROR,
                "CancelledError: the handler raised CancelledError without being cancelled",
                self._tb(),
            )
        except CallRejectedError as exc:
            return self.error_message(msg, exc.code, exc.message, self._tb())
        except Exception as exc:
            return self.error_message(msg, ErrorCode.HANDLER_ERROR, f"{type(exc).__name__}: {exc}", self._tb())
        if msg.type is _NOTIFY:
            return None
        try:
            if looks_large(result, config.offload_threshold) and not ser.constant_time:
                data = await rt.in_thread(large_encoder(ser, rt.transport), result)
                if type(data) is PayloadParts:  # buffers the transport sends without joining
                    return PartsMessage(msg.id, _RESPONSE, rt.node_id, msg.source, msg.method, data, ser.name)  # type: ignore[arg-type]
            else:
                data = ser.serialize(result)
        except Exception as exc:
            return self.error_message(
                msg,
                ErrorCode.SERIALIZATION_ERROR,
                f"handler of {msg.method!r} returned a value serializer {ser.name!r} cannot encode: {exc}",
                self._tb(),
            )
        return Message(msg.id, _RESPONSE, rt.node_id, msg.source, msg.method, data, ser.name)

    # ------------------------------------------------------------------ errors
    def _tb(self) -> str | None:
        return traceback.format_exc() if self._rt.config.debug else None

    def error_message(self, msg: Message, code: ErrorCode | str, text: str, tb: str | None = None) -> Message:
        """The ERROR answering ``msg`` (a traceback only with ``debug: true``)."""
        rt = self._rt
        return Message(
            msg.id,
            _ERROR,
            rt.node_id,
            msg.source,
            msg.method,
            error=ErrorInfo(str(code), text, tb if rt.config.debug else None),
        )

    def reply_error(self, msg: Message, code: ErrorCode, text: str) -> None:
        """Answer a request with an error, in the background (notifies get no answer)."""
        if msg.type is _REQUEST:
            rt = self._rt
            rt.spawn(rt.send_quiet(self.error_message(msg, code, text)))
