"""The ``metrics`` interceptor: scraped over HTTP from its port after real calls between nodes."""

from __future__ import annotations

import asyncio
import socket
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

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
from node_comm_interceptors import MetricsInterceptor

SECRET = "payload-text-never-in-a-label-9913"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_of(node: Node) -> MetricsInterceptor:
    return next(i for i in node.interceptors if isinstance(i, MetricsInterceptor))


def config(node_id: str, transport: str, **options: Any) -> NodeConfig:
    if transport == "grpc":
        grpc = GrpcTransportConfig(host="127.0.0.1", port=0 if node_id == "b" else None)
        tc = TransportConfig(mode="grpc", grpc=grpc)
    else:
        tc = TransportConfig(mode="memory")
    return NodeConfig(
        node_id=node_id,
        transport=tc,
        shutdown_grace=0.5,
        interceptors=[InterceptorConfig("metrics", {"registry": CollectorRegistry(), **options})],
    )


async def echo(payload: Any, ctx: CallContext) -> Any:
    return payload


async def fail(payload: Any, ctx: CallContext) -> None:
    raise RuntimeError("no")


async def test_scraped_over_http_after_grpc_calls(started: Callable[..., Any]) -> None:
    b = await started(Node("b", config("b", "grpc", port=0)))
    a = await started(Node("a", config("a", "grpc", port=0)))
    b.register("echo", echo)
    b.register("fail", fail)
    gone = asyncio.Event()
    b.on("disconnect", lambda node_id, reason: gone.set())
    await a.connect("b", b.address)
    await a.call("b", "echo", "warm-up")  # the first call subscribes the gauge to b's events
    payload = {"secret": SECRET}
    await a.notify("b", "echo", payload)
    for _ in range(3):
        assert await a.call("b", "echo", payload) == payload
    for method in ("fail", "missing"):
        with pytest.raises(RemoteExecutionError):
            await a.call("b", method, payload)

    text, s = await asyncio.to_thread(scrape, metrics_of(b).port)
    assert SECRET not in text
    inbound = {"node": "b", "peer": "a", "direction": "inbound"}
    assert value(s, "node_comm_calls_total", method="echo", code="OK", **inbound) == 5  # warm-up, notify, 3
    assert value(s, "node_comm_calls_total", method="fail", code="HANDLER_ERROR", **inbound) == 1
    # A method b does not serve is not a label value of its own (peers choose these names).
    assert value(s, "node_comm_calls_total", method="<unknown>", code="METHOD_NOT_FOUND", **inbound) == 1
    assert value(s, "node_comm_call_duration_seconds_count", method="echo", code="OK", **inbound) == 5
    assert value(s, "node_comm_call_duration_seconds_sum", method="echo", code="OK", **inbound) > 0
    size = len(b"warm-up") + 2 + 4 * len(b'{"secret": "' + SECRET.encode() + b'"}')
    request_bytes = value(s, "node_comm_payload_bytes_total", method="echo", part="request", **inbound)
    assert abs(request_bytes - size) <= 8  # json spacing aside
    assert value(s, "node_comm_payload_bytes_total", method="echo", part="response", **inbound) > 0
    assert value(s, "node_comm_connected_peers", node="b") == 1
    assert value(s, "node_comm_inflight_calls", node="b", direction="inbound") == 0

    _, s = await asyncio.to_thread(scrape, metrics_of(a).port)
    outbound = {"node": "a", "peer": "b", "direction": "outbound"}
    assert value(s, "node_comm_calls_total", method="echo", code="OK", **outbound) == 5
    assert value(s, "node_comm_calls_total", method="missing", code="METHOD_NOT_FOUND", **outbound) == 1
    assert value(s, "node_comm_connected_peers", node="a") == 1

    await a.disconnect("b")
    await asyncio.wait_for(gone.wait(), 5)
    _, s = await asyncio.to_thread(scrape, metrics_of(b).port)
    assert value(s, "node_comm_connected_peers", node="b") == 0


async def test_inflight_gauge_counts_running_calls(started: Callable[..., Any]) -> None:
    b = await started(Node("b", config("b", "memory", port=0)))
    a = await started(Node("a", config("a", "memory")))
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(payload: Any, ctx: CallContext) -> None:
        entered.set()
        await release.wait()

    b.register("hold", hold)
    await a.connect("b")
    call = asyncio.ensure_future(a.call("b", "hold"))
    await asyncio.wait_for(entered.wait(), 5)
    _, s = await asyncio.to_thread(scrape, metrics_of(b).port)
    assert value(s, "node_comm_inflight_calls", node="b", direction="inbound") == 1
    release.set()
    await call
    _, s = await asyncio.to_thread(scrape, metrics_of(b).port)
    assert value(s, "node_comm_inflight_calls", node="b", direction="inbound") == 0


async def test_peer_label_off_and_unknown_methods_stay_bounded(started: Callable[..., Any]) -> None:
    b = await started(Node("b", config("b", "memory", port=0, peer_label=False)))
    b.register("echo", echo)
    for n in range(3):
        a = await started(Node(f"a{n}", config(f"a{n}", "memory")))
        await a.connect("b")
        await a.call("b", "echo", n)
        for k in range(50):  # a peer inventing method names
            with pytest.raises(RemoteExecutionError):
                await a.call("b", f"probe-{n}-{k}")
    _, s = await asyncio.to_thread(scrape, metrics_of(b).port)
    calls = {dict(labels)["method"]: v for (name, labels), v in s.items() if name == "node_comm_calls_total"}
    assert calls == {"echo": 3, "<unknown>": 150}
    peers = {dict(labels).get("peer") for (name, labels) in s if name == "node_comm_calls_total"}
    assert peers == {""}


async def test_default_registry_without_port() -> None:
    a = Node("a", NodeConfig(node_id="a", interceptors=[InterceptorConfig("metrics")]))
    b = Node("b", NodeConfig(node_id="b"))
    b.register("echo", echo)
    labels = {"node": "a", "method": "echo", "peer": "b", "direction": "outbound", "code": "OK"}
    before = REGISTRY.get_sample_value("node_comm_calls_total", labels) or 0
    assert metrics_of(a).port is None
    async with a, b:
        await a.connect("b")
        await a.call("b", "echo", 1)
    assert REGISTRY.get_sample_value("node_comm_calls_total", labels) == before + 1


def test_port_in_use_and_bad_port_are_config_errors() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            Node("n", config("n", "memory", port=port))
    assert "interceptors[0]" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Node("n", config("n", "memory", port=70000))
    assert "port" in str(info.value)


def test_missing_prometheus_client_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if not installed
    with pytest.raises(ConfigError) as info:
        Node("n", NodeConfig(node_id="n", interceptors=[InterceptorConfig("metrics")]))
    assert "pip install 'node-comm-interceptors[metrics]'" in str(info.value)
    assert "interceptors[0]" in str(info.value)


def test_registry_must_be_a_collector_registry() -> None:
    with pytest.raises(ConfigError) as info:
        Node("n", NodeConfig(node_id="n", interceptors=[InterceptorConfig("metrics", {"registry": "mine"})]))
    assert "interceptors[0]" in str(info.value) and "CollectorRegistry" in str(info.value)


def test_a_fixed_port_in_yaml_serves_once_load_config_and_node_built_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """load_config checks interceptor options by building them; the node builds them again: the
    second build shares the first one's /metrics server instead of failing on the port."""
    import socket
    import urllib.request

    from node_comm import Node, load_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "node.yaml"
    path.write_text(f"node_id: m\ninterceptors:\n  - name: metrics\n    options: {{port: {port}}}\n")
    node = Node("m", load_config(str(path)))
    interceptor = next(iter(node.interceptors))
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "node_comm_calls_total" in body or "python_info" in body
    finally:
        interceptor.close()  # type: ignore[attr-defined]
