"""Every numeric option is finite and within a sane range, checked at load with the key path.

Absurd numbers used to pass ``load_config`` and crash ``start()`` (``keepalive_time: 1e308`` is an
OverflowError, ``.nan`` a ValueError, ``chunk_size: 1e12`` overflows gRPC's message limits), or run
a node that burns a core (a 1 ns heartbeat, a zero or NaN reconnect backoff).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node_comm import (
    ConfigError,
    HeartbeatConfig,
    Interceptor,
    MemoryTransportConfig,
    NodeConfig,
    hookimpl,
    load_config,
)
from node_comm.validate import check_bytes, check_int, check_number, check_seconds
from node_comm_grpc.config import GrpcTransportConfig, ReconnectConfig

BIG = 10**12  # a plain YAML integer


def load(tmp_path: Path, text: str) -> NodeConfig:
    path = tmp_path / "node.yaml"
    path.write_text("node_id: n\n" + text)
    return load_config(path)


def grpc(options: str) -> str:
    return "transport:\n  mode: grpc\n  grpc: {" + options + "}\n"


def reconnect(options: str) -> str:
    return grpc("reconnect: {" + options + "}")


ABSURD = [
    # kernel: NodeConfig
    ("default_timeout: 1e308", "default_timeout: expected a number <= 604800 (7 days), got 1e+308"),
    ("default_timeout: .inf", "default_timeout: expected a number <= 604800 (7 days), got inf"),
    ("default_timeout: -.inf", "default_timeout: expected a number > 0, got -inf"),
    ("connect_timeout: .nan", "connect_timeout: expected a number > 0, got nan"),
    ("connect_timeout: 0", "connect_timeout: expected a number > 0, got 0.0"),
    ("connect_timeout: 1e9", "connect_timeout: expected a number <= 604800"),
    ("connect_timeout: " + "9" * 400, "connect_timeout: expected a number, got an integer of about 400 digits"),
    ("shutdown_grace: .inf", "shutdown_grace: expected a number <= 604800"),
    ("shutdown_grace: .nan", "shutdown_grace: expected a number >= 0, got nan"),
    ("max_concurrent_calls_per_peer: true", "max_concurrent_calls_per_peer: expected an integer, got True"),
    ("max_concurrent_calls_per_peer: 1.5", "max_concurrent_calls_per_peer: expected an integer, got 1.5"),
    (f"max_concurrent_calls_per_peer: {BIG}", "max_concurrent_calls_per_peer: expected an integer <= 1000000"),
    ("max_concurrent_calls_per_peer: -1", "max_concurrent_calls_per_peer: expected an integer >= 1"),
    # kernel: HeartbeatConfig, MemoryTransportConfig
    ("heartbeat: {interval: 0.000000001}", "heartbeat.interval: expected a number >= 0.01, got 1e-09; pinging"),
    ("heartbeat: {interval: .nan}", "heartbeat.interval: expected a number > 0, got nan"),
    ("heartbeat: {interval: .inf}", "heartbeat.interval: expected a number <= 604800"),
    ("heartbeat: {interval: 1, timeout: .inf}", "heartbeat.timeout: expected a number <= 604800"),
    ("heartbeat: {interval: 1, timeout: .nan}", "heartbeat.timeout: expected a number > 0, got nan"),
    ("transport: {memory: {latency: .nan}}", "transport.memory.latency: expected a number >= 0, got nan"),
    ("transport: {memory: {latency: 1e308}}", "transport.memory.latency: expected a number <= 604800"),
    # grpc: GrpcTransportConfig
    (grpc("port: -1"), "transport.grpc.port: expected an integer >= 0, got -1; null for a dial-only node"),
    (grpc("port: 65536"), "transport.grpc.port: expected an integer <= 65535, got 65536"),
    (grpc("port: true"), "transport.grpc.port: expected an integer, got True"),
    (grpc("chunk_size: 1e12"), "transport.grpc.chunk_size: expected an integer, got '1e12'"),
    (grpc(f"chunk_size: {BIG}"), "transport.grpc.chunk_size: expected an integer <= 16777216 (16 MiB)"),
    (grpc("chunk_size: 0"), "transport.grpc.chunk_size: expected an integer >= 1024 (1 KiB), got 0"),
    (grpc("max_payload_size: -1"), "transport.grpc.max_payload_size: expected an integer >= 0, got -1"),
    (grpc(f"max_payload_size: {BIG * 1000}"), "transport.grpc.max_payload_size: expected an integer <= 68719476736"),
    (grpc("max_receive_buffer: 0"), "transport.grpc.max_receive_buffer: expected an integer >= 1024"),
    (grpc(f"max_receive_buffer: {BIG * 1000}"), "transport.grpc.max_receive_buffer: expected an integer <="),
    (grpc(f"max_batch_bytes: {BIG}"), "transport.grpc.max_batch_bytes: expected an integer <= 33554432 (32 MiB)"),
    (grpc("max_batch_bytes: 100"), "transport.grpc.max_batch_bytes: expected an integer >= 1024"),
    (grpc(f"send_queue_bytes: {BIG}"), "transport.grpc.send_queue_bytes: expected an integer <= 1073741824 (1 GiB)"),
    (grpc("send_queue_bytes: -5"), "transport.grpc.send_queue_bytes: expected an integer >= 1024"),
    (grpc("handshake_timeout: 0"), "transport.grpc.handshake_timeout: expected a number > 0, got 0.0"),
    (grpc("handshake_timeout: -1"), "transport.grpc.handshake_timeout: expected a number > 0, got -1.0"),
    (grpc("handshake_timeout: .nan"), "transport.grpc.handshake_timeout: expected a number > 0, got nan"),
    (grpc("handshake_timeout: 86400"), "transport.grpc.handshake_timeout: expected a number <= 600, got 86400.0"),
    (grpc("keepalive_time: 1e308"), "transport.grpc.keepalive_time: expected a number <= 604800"),
    (grpc("keepalive_time: .nan"), "transport.grpc.keepalive_time: expected a number > 0, got nan"),
    (grpc("keepalive_time: 0.001"), "transport.grpc.keepalive_time: expected a number >= 0.1, got 0.001"),
    (grpc("keepalive_timeout: -.inf"), "transport.grpc.keepalive_timeout: expected a number > 0, got -inf"),
    (grpc("keepalive_timeout: 0"), "transport.grpc.keepalive_timeout: expected a number > 0"),
    (grpc("stop_grace: -1"), "transport.grpc.stop_grace: expected a number >= 0, got -1.0"),
    (grpc("stop_grace: .inf"), "transport.grpc.stop_grace: expected a number <= 604800"),
    # grpc: ReconnectConfig
    (reconnect("initial_backoff: 0"), "transport.grpc.reconnect.initial_backoff: expected a number > 0, got 0.0"),
    (reconnect("initial_backoff: -1"), "transport.grpc.reconnect.initial_backoff: expected a number > 0"),
    (reconnect("initial_backoff: .nan"), "transport.grpc.reconnect.initial_backoff: expected a number > 0, got nan"),
    (reconnect("initial_backoff: 1e-9"), "transport.grpc.reconnect.initial_backoff: expected a number >= 0.01"),
    (reconnect("max_backoff: 0"), "transport.grpc.reconnect.max_backoff: expected a number > 0"),
    (reconnect("max_backoff: .inf"), "transport.grpc.reconnect.max_backoff: expected a number <= 604800"),
    (
        reconnect("initial_backoff: 5, max_backoff: 1"),
        "transport.grpc.reconnect.max_backoff: must be >= transport.grpc.reconnect.initial_backoff (1 < 5)",
    ),
    (reconnect("multiplier: 0.5"), "transport.grpc.reconnect.multiplier: expected a number >= 1, got 0.5"),
    (reconnect("multiplier: .nan"), "transport.grpc.reconnect.multiplier: expected a number >= 1, got nan"),
    (reconnect("multiplier: 1e9"), "transport.grpc.reconnect.multiplier: expected a number <= 100"),
    (reconnect("jitter: 5"), "transport.grpc.reconnect.jitter: expected a number <= 1, got 5.0; a fraction"),
    (reconnect("jitter: -0.1"), "transport.grpc.reconnect.jitter: expected a number >= 0, got -0.1"),
    (reconnect("jitter: .nan"), "transport.grpc.reconnect.jitter: expected a number >= 0, got nan"),
    (reconnect("max_attempts: -1"), "transport.grpc.reconnect.max_attempts: expected an integer >= 0, got -1"),
    (reconnect("max_attempts: 2.5"), "transport.grpc.reconnect.max_attempts: expected an integer, got 2.5"),
    (reconnect(f"max_attempts: {BIG}"), "transport.grpc.reconnect.max_attempts: expected an integer <= 1000000"),
]


@pytest.mark.parametrize("text, expected", ABSURD, ids=[t for t, _ in ABSURD])
def test_absurd_number_is_a_config_error_at_load(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text + "\n")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("nan", "transport.grpc.keepalive_time: expected a number > 0, got nan"),
        ("inf", "transport.grpc.keepalive_time: expected a number <= 604800"),
        ("1e308", "transport.grpc.keepalive_time: expected a number <= 604800"),
    ],
)
def test_absurd_number_from_an_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("NC_KEEPALIVE", value)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, grpc("keepalive_time: '${NC_KEEPALIVE}'"))
    assert expected in str(info.value)


def test_the_edges_of_every_range_load(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "default_timeout: 604800\nconnect_timeout: 0.001\nshutdown_grace: 0\n"
        "max_concurrent_calls_per_peer: 1000000\n"
        "heartbeat: {interval: 0.01, timeout: 604800}\n"
        "transport:\n  mode: grpc\n  memory: {latency: 0}\n  grpc:\n"
        "    port: 65535\n    chunk_size: 16777216\n    max_payload_size: 0\n"
        "    max_receive_buffer: 1024\n    max_batch_bytes: 33554432\n    send_queue_bytes: 1073741824\n"
        "    handshake_timeout: 600\n    keepalive_time: 0.1\n    keepalive_timeout: 604800\n"
        "    stop_grace: 0\n"
        "    reconnect: {initial_backoff: 0.01, max_backoff: 0.01, multiplier: 1, jitter: 1, max_attempts: 0}\n",
    )
    g = config.transport.grpc
    assert (config.heartbeat.interval, g.port, g.chunk_size, g.reconnect.jitter) == (0.01, 65535, 16 << 20, 1.0)
    assert load(tmp_path, grpc("port: 0, max_payload_size: 68719476736")).transport.grpc.port == 0
    assert load(tmp_path, reconnect("multiplier: 100, jitter: 0, max_attempts: 1000000")).transport.grpc


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: ReconnectConfig(jitter=5), "transport.grpc.reconnect.jitter: expected a number <= 1, got 5"),
        (lambda: ReconnectConfig(initial_backoff=0), "transport.grpc.reconnect.initial_backoff: expected a number > 0"),
        (lambda: ReconnectConfig(multiplier=float("nan")), "transport.grpc.reconnect.multiplier: expected a number"),
        (lambda: GrpcTransportConfig(port=True), "transport.grpc.port: expected an integer >= 0, got True"),
        (lambda: GrpcTransportConfig(port=70000), "transport.grpc.port: expected an integer <= 65535, got 70000"),
        (lambda: GrpcTransportConfig(chunk_size=1e12), "transport.grpc.chunk_size: expected an integer >= 1024"),
        (lambda: GrpcTransportConfig(keepalive_time=1e308), "transport.grpc.keepalive_time: expected a number <= "),
        (lambda: GrpcTransportConfig(handshake_timeout=0), "transport.grpc.handshake_timeout: expected a number > 0"),
        (lambda: GrpcTransportConfig(max_payload_size=-1), "transport.grpc.max_payload_size: expected an integer >= 0"),
        (lambda: HeartbeatConfig(interval=1e-9), "heartbeat.interval: expected a number >= 0.01"),
        (lambda: MemoryTransportConfig(latency=float("inf")), "transport.memory.latency: expected a number <= "),
        (lambda: NodeConfig("n", max_concurrent_calls_per_peer=True), "max_concurrent_calls_per_peer: expected an"),
        (lambda: NodeConfig("n", connect_timeout="10"), "connect_timeout: expected a number > 0, got '10'"),
    ],
)
def test_options_built_in_code_are_checked_with_their_key_path(build: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()  # type: ignore[operator]
    assert expected in str(info.value)


def test_validate_helpers_are_one_line_per_field() -> None:
    """The helpers plugins use for their own options."""
    check_int("transport.x.max_connections", 4096, minimum=1, maximum=1_000_000)
    check_seconds("transport.x.transfer_timeout", 30.0)
    check_seconds("transport.x.grace", 0, minimum=0)
    check_number("interceptors[0].options.max_skew", None, minimum=0, allow_none=True)
    with pytest.raises(ConfigError, match=r"^transport\.x\.max_connections: expected an integer >= 1, got 0; fix it$"):
        check_int("transport.x.max_connections", 0, minimum=1, maximum=10, fix="fix it")
    with pytest.raises(ConfigError, match=r"^transport\.x\.transfer_timeout: expected a number > 0, got False$"):
        check_seconds("transport.x.transfer_timeout", False)
    with pytest.raises(ConfigError, match=r"^x: expected an integer <= 65536, got 65537$"):
        check_int("x", 65537, minimum=1, maximum=65536)  # a count, not a size
    with pytest.raises(ConfigError, match=r"^x: expected an integer <= 65536 \(64 KiB\), got 65537$"):
        check_bytes("x", 65537, minimum=1, maximum=65536)
    with pytest.raises(ConfigError, match=r"expected a finite number, got inf"):
        check_number("x", float("inf"))
    with pytest.raises(ConfigError, match=r"got 'a+\.\.\.a+'$"):
        check_number("x", "a" * 500)


class _SkewPlugin:
    """An interceptor plugin that validates its own numeric option with node_comm.validate."""

    @hookimpl
    def node_comm_register_interceptors(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        def factory(max_skew: float = 30.0) -> Interceptor:
            check_seconds("max_skew", max_skew, maximum=3600)
            return Interceptor()

        register("skewed", factory)


@pytest.mark.parametrize(
    "value, expected",
    [
        (".nan", "max_skew: expected a number > 0, got nan"),
        ("1e308", "max_skew: expected a number <= 3600, got 1e+308"),
    ],
)
def test_an_interceptor_option_error_names_the_interceptor_entry(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(f"node_id: n\ninterceptors:\n  - {{name: skewed, options: {{max_skew: {value}}}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, plugins=[_SkewPlugin()])
    assert f"interceptors[0].options (skewed): {expected}" in str(info.value)
