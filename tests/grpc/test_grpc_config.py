"""YAML config of the grpc transport, and interceptors over gRPC."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import grpc_config

from node_comm import ConfigError, ErrorCode, InterceptorConfig, RemoteExecutionError, load_config
from node_comm_grpc.config import GrpcTransportConfig, ReconnectConfig, TlsConfig

YAML = """
node_id: coordinator
transport:
  mode: grpc
  grpc:
    host: 0.0.0.0
    port: 50100
    chunk_size: 262144
    max_payload_size: 1073741824
    tls: {cert_file: server.crt, key_file: server.key, ca_file: ca.crt, client_auth: true}
    reconnect: {initial_backoff: 0.5, max_backoff: 30, max_attempts: 10}
"""


def test_yaml_builds_nested_grpc_options(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(YAML)
    cfg = load_config(path)
    g = cfg.transport.grpc
    assert isinstance(g, GrpcTransportConfig)
    assert (g.host, g.port, g.chunk_size, g.max_payload_size) == ("0.0.0.0", 50100, 262144, 1 << 30)
    assert g.tls == TlsConfig(cert_file="server.crt", key_file="server.key", ca_file="ca.crt", client_auth=True)
    assert g.reconnect == ReconnectConfig(initial_backoff=0.5, max_backoff=30.0, max_attempts=10)


@pytest.mark.parametrize(
    "bad, key",
    [
        ("    tls: {cert: x}\n", "cert"),
        ("    reconnect: {enabled: maybe}\n", "enabled"),
        ("    port: 70000\n", "port"),
        ("    chunk_sise: 1\n", "chunk_sise"),
        ("    transfer_timeout: 0\n", "transfer_timeout"),
        ("    stall_timeout: -1\n", "stall_timeout"),
    ],
)
def test_yaml_typos_are_config_errors(tmp_path: Path, bad: str, key: str) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node_id: n\ntransport:\n  mode: grpc\n  grpc:\n" + bad)
    with pytest.raises(ConfigError, match=key):
        load_config(path)


def test_seed_style_config_keeps_its_fields() -> None:
    cfg = GrpcTransportConfig(host="0.0.0.0", port=50051)
    assert (cfg.host, cfg.port, cfg.tls) == ("0.0.0.0", 50051, None)
    assert GrpcTransportConfig().host == "127.0.0.1"


async def test_missing_tls_file_is_a_config_error(nodes) -> None:
    with pytest.raises(ConfigError, match=r"transport\.grpc\.tls\.(cert|key)_file: cannot read"):
        await nodes("b", grpc_config("b", tls=TlsConfig(cert_file="/nonexistent.crt", key_file="/x.key")))


async def test_auth_interceptor_works_over_grpc(nodes) -> None:
    def auth(token: str) -> list[InterceptorConfig]:
        return [InterceptorConfig("auth", {"token": token})]

    b = await nodes("b", grpc_config("b", interceptors=auth("s3cret")))
    good = await nodes("good", grpc_config("good", port=None, interceptors=auth("s3cret")))
    bad = await nodes("bad", grpc_config("bad", port=None, interceptors=auth("guess")))
    b.register("echo", lambda p, ctx: p)
    await good.connect("b", b.address)
    await bad.connect("b", b.address)
    assert await good.call("b", "echo", "in") == "in"
    with pytest.raises(RemoteExecutionError) as info:
        await bad.call("b", "echo", "in")
    assert info.value.code is ErrorCode.UNAUTHENTICATED
