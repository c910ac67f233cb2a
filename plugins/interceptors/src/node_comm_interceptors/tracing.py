"""``tracing``: OpenTelemetry spans around every call, W3C trace context carried in call metadata.

Install with ``pip install node-comm-interceptors[tracing]`` (opentelemetry-api only; the program
configures an SDK and exporter as usual). A CLIENT span wraps each outbound call or notify, a SERVER
span each inbound one, named by the method, with the RPC semantic conventions' attributes
(``rpc.system = "node_comm"``, ``rpc.method``, ``net.peer.name`` = the peer's node id). The client
injects ``traceparent``/``tracestate`` into the call's metadata and the server continues that trace;
the server span is current while the handler runs, so calls the handler makes join the same trace.
A failed call's span has status ERROR and the attribute ``rpc.node_comm.code``.

With no tracer provider configured (OpenTelemetry's default no-op), messages pass through untouched:
no span object, no metadata, nothing but one check per message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from node_comm import CallContext, ConfigError, ErrorCode, Interceptor, Message, NodeCommError
from node_comm.interceptor import NextHandler

PIP_HINT = "pip install 'node-comm-interceptors[tracing]'"
INSTRUMENTATION = "node_comm"
CODE_ATTRIBUTE = "rpc.node_comm.code"


def _otel() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise ConfigError(f"the 'tracing' interceptor needs opentelemetry-api; install it with: {PIP_HINT}") from None
    return trace, context, TraceContextTextMapPropagator()


class TracingInterceptor(Interceptor):
    """Option ``tracer_provider`` (default: OpenTelemetry's global one, as set by
    ``trace.set_tracer_provider``; tests pass their own SDK ``TracerProvider``)."""

    name = "tracing"

    def __init__(self, tracer_provider: Any = None) -> None:
        self._trace, self._context, self._propagator = _otel()
        if tracer_provider is not None and not isinstance(tracer_provider, self._trace.TracerProvider):
            raise ConfigError(
                f"tracer_provider: an opentelemetry TracerProvider is required (in code only), got "
                f"{tracer_provider!r}; omit it to use the global one (trace.set_tracer_provider)"
            )
        self._provider = tracer_provider
        self._noop_types = (self._trace.ProxyTracerProvider, self._trace.NoOpTracerProvider)
        self._tracer_of: tuple[Any, Any] = (None, None)  # (provider, its tracer)
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._client, self._server = SpanKind.CLIENT, SpanKind.SERVER
        self._status, self._error = Status, StatusCode.ERROR

    def __repr__(self) -> str:
        return f"<TracingInterceptor provider={type(self._provider or self._trace.get_tracer_provider()).__name__}>"

    def _tracer(self) -> Any:
        """The tracer to use now, or ``None`` when no tracer provider is configured."""
        provider = self._provider if self._provider is not None else self._trace.get_tracer_provider()
        if isinstance(provider, self._noop_types):
            return None
        cached, tracer = self._tracer_of
        if cached is not provider:
            tracer = provider.get_tracer(INSTRUMENTATION)
            self._tracer_of = (provider, tracer)
        return tracer

    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        tracer = self._tracer()
        if tracer is None:
            return await next_handler(message)
        span = tracer.start_span(
            message.method, kind=self._client, attributes=self._attributes(message, context.target)
        )
        ctx = self._trace.set_span_in_context(span)
        self._propagator.inject(message.metadata, context=ctx)
        return await self._run(span, ctx, message, next_handler)

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        tracer = self._tracer()
        if tracer is None:
            return await next_handler(message)
        parent = self._propagator.extract(message.metadata)
        span = tracer.start_span(
            message.method, context=parent, kind=self._server, attributes=self._attributes(message, context.source)
        )
        return await self._run(span, self._trace.set_span_in_context(span, parent), message, next_handler)

    @staticmethod
    def _attributes(message: Message, peer: str) -> dict[str, Any]:
        return {"rpc.system": "node_comm", "rpc.method": message.method, "net.peer.name": peer}

    async def _run(self, span: Any, ctx: Any, message: Message, next_handler: NextHandler) -> Message | None:
        """Run the rest of the chain with ``span`` current; set its status from the outcome; end it."""
        token = self._context.attach(ctx)
        try:
            reply = await next_handler(message)
            if reply is not None and reply.error is not None:
                self._fail(span, ErrorCode.parse(reply.error.code).value, reply.error.message)
            return reply
        except NodeCommError as exc:
            self._fail(span, exc.code.value, exc.message)
            raise
        except asyncio.CancelledError:
            self._fail(span, ErrorCode.CANCELLED.value, "cancelled")
            raise
        except Exception as exc:
            span.record_exception(exc)
            self._fail(span, ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._context.detach(token)
            span.end()

    def _fail(self, span: Any, code: str, text: str) -> None:
        span.set_attribute(CODE_ATTRIBUTE, code)
        span.set_status(self._status(self._error, f"{code}: {text}"[:500]))
