"""The ``tracing`` interceptor: spans collected with the OpenTelemetry SDK's in-memory exporter across
nodes over gRPC, a nested call in one trace, error status, and no cost without a tracer provider."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from node_comm import (
    CallContext,
    ConfigError,
    GrpcTransportConfig,
    InterceptorConfig,
    Node,
    NodeConfig,
    RemoteExecutionError,
    TransportConfig,
)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def grpc_node(node_id: str, listen: bool, interceptors: list[InterceptorConfig]) -> Node:
    grpc = GrpcTransportConfig(host="127.0.0.1", port=0 if listen else None)
    cfg = NodeConfig(
        node_id=node_id,
        transport=TransportConfig(mode="grpc", grpc=grpc),
        shutdown_grace=0.5,
        interceptors=interceptors,
    )
    return Node(node_id, cfg)


async def test_one_trace_across_three_nodes_and_a_nested_call(
    started: Callable[..., Any], provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = [InterceptorConfig("tracing", {"tracer_provider": provider})]
    # b listens; a and c dial it. b's handler of "outer" calls c's "inner" over c's link.
    b = await started(grpc_node("b", True, tracing))
    a = await started(grpc_node("a", False, tracing))
    c = await started(grpc_node("c", False, tracing))
    seen_metadata: list[dict[str, str]] = []

    async def outer(payload: Any, ctx: CallContext) -> Any:
        return {"inner": await ctx.node.call("c", "inner", payload)}

    async def inner(payload: Any, ctx: CallContext) -> Any:
        seen_metadata.append(dict(ctx.metadata))
        return payload * 2

    b.register("outer", outer)
    c.register("inner", inner)
    await a.connect("b", b.address)
    await c.connect("b", b.address)
    assert await a.call("b", "outer", 21) == {"inner": 42}
    assert seen_metadata and "traceparent" in seen_metadata[0]

    spans = {(s.name, s.kind): s for s in exporter.get_finished_spans()}
    assert set(spans) == {
        ("outer", SpanKind.CLIENT),
        ("outer", SpanKind.SERVER),
        ("inner", SpanKind.CLIENT),
        ("inner", SpanKind.SERVER),
    }
    a_out, b_in = spans[("outer", SpanKind.CLIENT)], spans[("outer", SpanKind.SERVER)]
    b_out, c_in = spans[("inner", SpanKind.CLIENT)], spans[("inner", SpanKind.SERVER)]
    assert len({s.context.trace_id for s in spans.values()}) == 1
    assert a_out.parent is None
    assert b_in.parent is not None and b_in.parent.span_id == a_out.context.span_id and b_in.parent.is_remote
    assert b_out.parent is not None and b_out.parent.span_id == b_in.context.span_id
    assert c_in.parent is not None and c_in.parent.span_id == b_out.context.span_id
    assert dict(a_out.attributes or {}) == {"rpc.system": "node_comm", "rpc.method": "outer", "net.peer.name": "b"}
    assert dict(b_in.attributes or {})["net.peer.name"] == "a"
    assert dict(c_in.attributes or {})["net.peer.name"] == "b"
    assert all(s.status.status_code is StatusCode.UNSET for s in spans.values())


async def test_failed_call_has_error_status_with_its_code(
    started: Callable[..., Any], provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = [InterceptorConfig("tracing", {"tracer_provider": provider})]
    b = await started(grpc_node("b", True, tracing))
    a = await started(grpc_node("a", False, tracing))

    async def broken(payload: Any, ctx: CallContext) -> None:
        raise ValueError("bad input")

    b.register("broken", broken)
    await a.connect("b", b.address)
    with pytest.raises(RemoteExecutionError):
        await a.call("b", "broken")
    with pytest.raises(RemoteExecutionError):
        await a.call("b", "absent")
    spans = {(s.name, s.kind): s for s in exporter.get_finished_spans()}
    for key, code in (
        (("broken", SpanKind.CLIENT), "HANDLER_ERROR"),
        (("broken", SpanKind.SERVER), "HANDLER_ERROR"),
        (("absent", SpanKind.CLIENT), "METHOD_NOT_FOUND"),
        (("absent", SpanKind.SERVER), "METHOD_NOT_FOUND"),
    ):
        span = spans[key]
        assert span.status.status_code is StatusCode.ERROR, key
        assert (span.attributes or {})["rpc.node_comm.code"] == code
        assert (span.status.description or "").startswith(code)


async def test_notify_is_traced_too(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    import asyncio

    tracing = [InterceptorConfig("tracing", {"tracer_provider": provider})]
    a = Node("a", NodeConfig(node_id="a", interceptors=tracing))
    b = Node("b", NodeConfig(node_id="b", interceptors=tracing))
    got = asyncio.Event()
    b.register("note", lambda p, ctx: got.set())
    async with a, b:
        await a.connect("b")
        await a.notify("b", "note", 1)
        await asyncio.wait_for(got.wait(), 5)
        await a.call("b", "note", 2)  # served after the notify: its span has ended by now
    spans = [s for s in exporter.get_finished_spans() if s.name == "note"]
    client = [s for s in spans if s.kind is SpanKind.CLIENT]
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(client) == 2 and len(server) == 2
    assert {s.parent.span_id for s in server if s.parent} == {s.context.span_id for s in client}


async def test_no_tracer_provider_means_no_spans_and_no_metadata() -> None:
    from opentelemetry import trace

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), "a test set a global provider"
    tracing = [InterceptorConfig("tracing")]
    a = Node("a", NodeConfig(node_id="a", interceptors=tracing))
    b = Node("b", NodeConfig(node_id="b", interceptors=tracing))
    seen: list[dict[str, str]] = []
    b.register("look", lambda p, ctx: seen.append(dict(ctx.metadata)))
    async with a, b:
        await a.connect("b")
        await a.call("b", "look")
    assert seen == [{}]


def test_missing_opentelemetry_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError) as info:
        Node("n", NodeConfig(node_id="n", interceptors=[InterceptorConfig("tracing")]))
    assert "pip install 'node-comm-interceptors[tracing]'" in str(info.value)


def test_tracer_provider_must_be_one() -> None:
    with pytest.raises(ConfigError) as info:
        Node("n", NodeConfig(node_id="n", interceptors=[InterceptorConfig("tracing", {"tracer_provider": "x"})]))
    assert "interceptors[0]" in str(info.value) and "TracerProvider" in str(info.value)
