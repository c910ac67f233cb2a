"""YAML config: every option, ${ENV} interpolation, and an error that names the key path and the fix
for every mistake (typed ConfigError, raised by load_config before any Node exists)."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from node_comm import (
    ConfigError,
    HeartbeatConfig,
    InterceptorConfig,
    MemoryTransportConfig,
    MethodOptions,
    Node,
    NodeConfig,
    PeerConfig,
    PluginsConfig,
    load_config,
)
from node_comm.config_loader import config_from_dict

ROOT = Path(__file__).resolve().parent.parent


Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """``write(text, name="node.yaml")``: a dedented YAML file in tmp_path."""

    def _write(text: str, name: str = "node.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_COMM_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("NODE_COMM_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# ---------------------------------------------------------------------------------------- valid files
def test_every_seed_table_option(write: Write) -> None:
    path = write(
        """
        node_id: worker-1
        debug: true
        default_timeout: 12.5
        transport:
          mode: memory
        heartbeat:
          enabled: true
          interval: 2
          timeout: 6
        """
    )
    config = load_config(path)
    assert isinstance(config, NodeConfig)
    assert config.node_id == "worker-1"
    assert config.debug is True
    assert config.default_timeout == 12.5
    assert config.transport.mode == "memory"
    assert config.heartbeat == HeartbeatConfig(enabled=True, interval=2.0, timeout=6.0)


def test_defaults_match_the_seed_table(write: Write) -> None:
    config = load_config(write("node_id: n\n"))
    assert (config.debug, config.default_timeout, config.transport.mode) == (False, 30.0, "memory")
    assert config.heartbeat == HeartbeatConfig(enabled=False, interval=30.0, timeout=90.0)
    assert config.interceptors == []
    assert config.plugins == PluginsConfig(autoload=True, block=[], only=None)


def test_every_nodeconfig_option(write: Write) -> None:
    path = write(
        """
        node_id: n
        connect_timeout: 3
        shutdown_grace: 0
        max_concurrent_calls_per_peer: 8
        default_timeout: null
        transport:
          mode: grpc
          memory: {latency: 0.01}
          grpc: {host: 0.0.0.0, port: 6000}
        interceptors:
          - name: logging
            options: {level: DEBUG}
          - name: auth
            options: {token: s3cret}
        plugins:
          autoload: true
          block: [nothing-by-this-name]
          only: [memory, grpc, serializers, interceptors]
        """
    )
    config = load_config(path)
    assert config.connect_timeout == 3.0 and isinstance(config.connect_timeout, float)
    assert config.shutdown_grace == 0.0
    assert config.max_concurrent_calls_per_peer == 8
    assert config.default_timeout is None
    assert config.transport.mode == "grpc"
    assert config.transport.memory == MemoryTransportConfig(latency=0.01)
    assert (config.transport.grpc.host, config.transport.grpc.port) == ("0.0.0.0", 6000)
    assert type(config.transport.grpc).__name__ == "GrpcTransportConfig"
    assert config.interceptors == [
        InterceptorConfig("logging", {"level": "DEBUG"}),
        InterceptorConfig("auth", {"token": "s3cret"}),
    ]
    assert config.plugins == PluginsConfig(
        autoload=True, block=["nothing-by-this-name"], only=["memory", "grpc", "serializers", "interceptors"]
    )


def test_interceptor_without_options_and_with_empty_options(write: Write) -> None:
    path = write(
        """
        node_id: n
        interceptors:
          - name: logging
          - name: logging
            options:
        """
    )
    assert load_config(path).interceptors == [InterceptorConfig("logging"), InterceptorConfig("logging")]


async def test_loaded_config_builds_a_working_node_with_its_interceptors(write: Write) -> None:
    text = """
        node_id: {id}
        interceptors:
          - name: auth
            options: {{token: shared}}
        """
    a = Node(config=load_config(write(text.format(id="cfg-a"), "a.yaml")))
    b = Node(config=load_config(write(text.format(id="cfg-b"), "b.yaml")))
    assert a.node_id == "cfg-a"
    assert [type(i).__name__ for i in a.interceptors] == ["AuthInterceptor"]

    async def hello(payload: dict[str, str], ctx: object) -> str:
        return f"hi {payload['name']}"

    b.register("hello", hello)
    async with a, b:
        await a.connect("cfg-b")
        assert await a.call("cfg-b", "hello", {"name": "x"}) == "hi x"


# ---------------------------------------------------------------------------------------- env vars
def test_env_interpolation(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_TEST_ID", "from-env")
    monkeypatch.setenv("NC_TEST_PORT", "7001")
    monkeypatch.setenv("NC_TEST_DEBUG", "true")
    monkeypatch.setenv("NC_TEST_TOKEN", "tok-123")
    monkeypatch.delenv("NC_TEST_UNSET", raising=False)
    path = write(
        """
        node_id: node-${NC_TEST_ID}
        debug: ${NC_TEST_DEBUG}
        default_timeout: ${NC_TEST_UNSET:-2.5}
        transport:
          mode: memory
          grpc: {port: "${NC_TEST_PORT}", host: "${NC_TEST_UNSET:-127.0.0.1}"}
        heartbeat: {enabled: "${NC_TEST_UNSET:-false}"}
        interceptors:
          - name: auth
            options: {token: "${NC_TEST_TOKEN}", metadata_key: "$${NOT_EXPANDED}"}
        """
    )
    config = load_config(path)
    assert config.node_id == "node-from-env"
    assert config.debug is True
    assert config.default_timeout == 2.5
    assert config.transport.grpc.port == 7001
    assert config.transport.grpc.host == "127.0.0.1"
    assert config.heartbeat.enabled is False
    assert config.interceptors[0].options == {"token": "tok-123", "metadata_key": "${NOT_EXPANDED}"}


def test_empty_default_is_allowed(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NC_TEST_UNSET", raising=False)
    assert load_config(write("node_id: a${NC_TEST_UNSET:-}b\n")).node_id == "ab"


def test_missing_env_var_names_key_and_variable(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NC_TEST_SECRET", raising=False)
    path = write(
        """
        node_id: n
        interceptors:
          - name: auth
            options: {token: "${NC_TEST_SECRET}"}
        """
    )
    msg = error_of(path)
    assert "interceptors[0].options.token: environment variable 'NC_TEST_SECRET' is not set" in msg
    assert "${NC_TEST_SECRET:-default}" in msg
    assert str(path) in msg


def test_env_value_of_wrong_type_names_key(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_TEST_PORT", "eighty")
    msg = error_of(write("node_id: n\ntransport: {grpc: {port: '${NC_TEST_PORT}'}}\n"))
    assert "transport.grpc.port: expected an integer, got 'eighty'" in msg


# ---------------------------------------------------------------------------------------- file-level errors
def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(missing)


def test_empty_file(write: Write) -> None:
    msg = error_of(write(""))
    assert "node.yaml: the file is empty" in msg and "node_id: NAME" in msg
    assert "is empty" in error_of(write("# only a comment\n"))


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")])
def test_not_a_mapping(write: Write, text: str, kind: str) -> None:
    msg = error_of(write(text))
    assert "expected a mapping of keys" in msg and f"got a {kind}" in msg


def test_yaml_syntax_error_gives_file_and_line(write: Write) -> None:
    path = write("node_id: n\ndebug: true\ntransport:\n  mode: [memory\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:")
    assert "invalid YAML at line 5" in msg or "invalid YAML at line 4" in msg


def test_yaml_tab_indentation_error_line(write: Write) -> None:
    path = write("node_id: n\ntransport:\n\tmode: memory\n")
    msg = error_of(path)
    assert f"{path}:3:" in msg and "invalid YAML at line 3" in msg


def test_duplicate_key_is_an_error_with_line(write: Write) -> None:
    path = write("node_id: a\ndebug: true\nnode_id: b\n")
    msg = error_of(path)
    assert "invalid YAML at line 3" in msg and "key 'node_id' appears twice" in msg


def test_node_id_is_required(write: Write) -> None:
    assert "node_id: required key is missing" in error_of(write("debug: true\n"))


# ---------------------------------------------------------------------------------------- key errors
@pytest.mark.parametrize(
    "text, expected",
    [
        ("node_id: n\ndebgu: true\n", "debgu: unknown key; did you mean 'debug'?"),
        ("node_id: n\ndefault_timout: 3\n", "default_timout: unknown key; did you mean 'default_timeout'?"),
        ("node_id: n\nheartbeat: {intervall: 3}\n", "heartbeat.intervall: unknown key; did you mean 'interval'?"),
        ("node_id: n\nheartbeat: {zzz: 3}\n", "heartbeat.zzz: unknown key; valid keys: enabled, interval, timeout"),
        ("node_id: n\ntransport: {mod: memory}\n", "transport.mod: unknown transport section; did you mean 'mode'?"),
        (
            "node_id: n\ntransport: {grcp: {port: 1}}\n",
            "transport.grcp: unknown transport section; did you mean 'grpc'?",
        ),
        ("node_id: n\ntransport: {grpc: {prot: 1}}\n", "transport.grpc.prot: unknown key; did you mean 'port'?"),
        (
            "node_id: n\ntransport: {memory: {latncy: 1}}\n",
            "transport.memory.latncy: unknown key; did you mean 'latency'?",
        ),
        ("node_id: n\nplugins: {blok: [x]}\n", "plugins.blok: unknown key; did you mean 'block'?"),
        ("node_id: n\ninterceptors: [{nme: logging}]\n", "interceptors[0].nme: unknown key; did you mean 'name'?"),
        (
            "node_id: n\ninterceptors: [{name: logging, option: {}}]\n",
            "interceptors[0].option: unknown key; did you mean 'options'?",
        ),
        (
            "node_id: n\ninterceptors: [{name: logging, options: {levle: INFO}}]\n",
            "interceptors[0].options.levle: unknown option of interceptor 'logging'; did you mean 'level'?",
        ),
    ],
)
def test_unknown_keys(write: Write, text: str, expected: str) -> None:
    assert expected in error_of(write(text))


# ---------------------------------------------------------------------------------------- type errors
@pytest.mark.parametrize(
    "text, expected",
    [
        ("node_id: n\ntransport: {grpc: {port: abc}}\n", "transport.grpc.port: expected an integer, got 'abc'"),
        ("node_id: n\ntransport: {grpc: {port: 1.5}}\n", "transport.grpc.port: expected an integer, got 1.5"),
        ("node_id: n\ndebug: maybe\n", "debug: expected a boolean (true/false), got 'maybe'"),
        ("node_id: n\ndefault_timeout: soon\n", "default_timeout: expected a number, got 'soon'"),
        ("node_id: n\nheartbeat: {interval: [1]}\n", "heartbeat.interval: expected a number, got [1]"),
        ("node_id: n\nheartbeat: true\n", "heartbeat: expected a mapping, got True"),
        ("node_id: n\ntransport: memory\n", "transport: expected a mapping, got 'memory'"),
        ("node_id: n\ntransport: {mode: 3}\n", "transport.mode: expected a transport name, got 3"),
        ("node_id: [a]\n", "node_id: expected a string, got ['a']"),
        (
            "node_id: n\nmax_concurrent_calls_per_peer: many\n",
            "max_concurrent_calls_per_peer: expected an integer, got 'many'",
        ),
        ("node_id: n\ninterceptors: {name: logging}\n", "interceptors: expected a list, got {'name': 'logging'}"),
        ("node_id: n\ninterceptors: [logging]\n", "interceptors[0]: expected a mapping, got 'logging'"),
        ("node_id: n\nplugins: {block: grpc}\n", "plugins.block: expected a list, got 'grpc'"),
        ("node_id: n\nplugins: {autoload: sometimes}\n", "plugins.autoload: expected a boolean (true/false)"),
        (
            "node_id: n\ninterceptors: [{name: logging, options: {log_payloads: nope}}]\n",
            "interceptors[0].options.log_payloads: expected a boolean (true/false), got 'nope'",
        ),
        (
            "node_id: n\ninterceptors: [{name: auth, options: {token: 123}}]\n",
            "interceptors[0].options.token: expected a string, got 123",
        ),
    ],
)
def test_ill_typed_values(write: Write, text: str, expected: str) -> None:
    assert expected in error_of(write(text))


# ---------------------------------------------------------------------------------------- value errors
@pytest.mark.parametrize(
    "text, expected",
    [
        ("node_id: ''\n", "node_id: expected a non-empty string"),
        ("node_id: n\ndefault_timeout: -1\n", "default_timeout: expected a number > 0, got -1.0; use null"),
        ("node_id: n\ndefault_timeout: 0\n", "default_timeout: expected a number > 0, got 0.0"),
        ("node_id: n\nconnect_timeout: -5\n", "connect_timeout: expected a number > 0"),
        ("node_id: n\nshutdown_grace: -0.1\n", "shutdown_grace: expected a number >= 0"),
        ("node_id: n\ndefault_timeout: .nan\n", "default_timeout: expected a number > 0, got nan"),
        ("node_id: n\nmax_concurrent_calls_per_peer: 0\n", "max_concurrent_calls_per_peer: expected an integer >= 1"),
        (
            "node_id: n\nmax_concurrent_notifies_per_peer: 0\n",
            "max_concurrent_notifies_per_peer: expected an integer >= 1",
        ),
        ("node_id: n\nheartbeat: {interval: 0}\n", "heartbeat.interval: expected a number > 0"),
        ("node_id: n\nheartbeat: {interval: 10, timeout: -1}\n", "heartbeat.timeout: expected a number > 0"),
        (
            "node_id: n\nheartbeat: {enabled: true, interval: 10, timeout: 10}\n",
            "heartbeat.timeout: must be greater than heartbeat.interval (10 <= 10)",
        ),
        (
            "node_id: n\nheartbeat: {interval: 100}\n",
            "heartbeat.timeout: must be greater than heartbeat.interval (90 <= 100)",
        ),
        ("node_id: n\ntransport: {memory: {latency: -1}}\n", "transport.memory.latency: expected a number >= 0"),
    ],
)
def test_insane_values(write: Write, text: str, expected: str) -> None:
    assert expected in error_of(write(text))


def test_heartbeat_error_suggests_a_fix(write: Write) -> None:
    msg = error_of(write("node_id: n\nheartbeat: {interval: 5, timeout: 4}\n"))
    assert "timeout: 15" in msg


def test_value_checks_apply_to_configs_built_in_code() -> None:
    with pytest.raises(ConfigError, match=r"heartbeat\.timeout: must be greater"):
        HeartbeatConfig(enabled=True, interval=1.0, timeout=0.5)
    with pytest.raises(ConfigError, match="default_timeout"):
        NodeConfig(node_id="n", default_timeout=-2)
    with pytest.raises(ConfigError, match=r"MethodOptions\.serializer"):
        MethodOptions(serializer="")


# ---------------------------------------------------------------------------------------- plugin names
def test_unknown_transport_lists_installed(write: Write) -> None:
    msg = error_of(write("node_id: n\ntransport: {mode: zmq}\n"))
    assert "transport.mode: transport 'zmq' is not installed; available: memory, grpc" in msg


def test_unknown_transport_did_you_mean(write: Write) -> None:
    msg = error_of(write("node_id: n\ntransport: {mode: memroy}\n"))
    assert "transport 'memroy' is not installed; did you mean 'memory'? available: memory, grpc" in msg


def test_unknown_interceptor_caught_at_load_time(write: Write) -> None:
    msg = error_of(write("node_id: n\ninterceptors:\n  - name: logging\n  - name: zipkin\n"))
    available = "available: acl, auth, logging, metrics, tracing"
    assert f"interceptors[1].name: interceptor 'zipkin' is not installed; {available}" in msg


def test_auth_without_token(write: Write) -> None:
    msg = error_of(write("node_id: n\ninterceptors:\n  - name: auth\n"))
    assert "interceptors[0].options.token: interceptor 'auth' requires this option" in msg


def test_auth_with_empty_token_is_refused(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_TEST_EMPTY", "")
    text = "node_id: n\ninterceptors:\n  - {name: auth, options: {token: '${NC_TEST_EMPTY}'}}\n"
    msg = error_of(write(text))
    assert "interceptors[0].options (auth): token: a non-empty string is required" in msg


def test_bad_log_level_names_interceptor(write: Write) -> None:
    msg = error_of(write("node_id: n\ninterceptors:\n  - {name: logging, options: {level: LOUD}}\n"))
    assert "interceptors[0].options (logging): level: unknown log level 'LOUD'" in msg


def test_unknown_serializer_at_register_lists_installed() -> None:
    node = Node("ser-check")
    with pytest.raises(ConfigError) as info:
        node.register("m", lambda p, c: p, MethodOptions(serializer="yaml"))
    assert "serializer 'yaml' is not installed; available: json, msgpack, numpy, pickle, raw" in str(info.value)


def test_section_of_a_transport_not_installed_here_is_kept(write: Write) -> None:
    """One file may serve machines with different plugins: a section for a transport that is not
    installed is kept as written (only a near-miss of an installed name is an error)."""
    config = load_config(write("node_id: n\ntransport: {zeromq_custom: {hwm: 10}}\n"))
    assert config.transport.section("zeromq_custom") == {"hwm": 10}


def test_config_from_dict_matches_load_config(write: Write) -> None:
    text = "node_id: n\ndebug: true\nheartbeat: {interval: 1, timeout: 3}\n"
    assert config_from_dict(yaml.safe_load(text)) == load_config(write(text))
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        config_from_dict(["node_id"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- config.example.yaml
def _keys(data: object, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            out.add(f"{prefix}{k}")
            out |= _keys(v, f"{prefix}{k}.")
    return out


def _fields(cls: type, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        out.add(f"{prefix}{f.name}")
    return out


def test_example_shows_every_option() -> None:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    keys = _keys(data)
    expected = (
        (_fields(NodeConfig) - {"transport"})
        | {"transport", "transport.mode", "transport.grpc.host", "transport.grpc.port"}
        | _fields(MemoryTransportConfig, "transport.memory.")
        | _fields(HeartbeatConfig, "heartbeat.")
        | _fields(PluginsConfig, "plugins.")
    )
    assert expected <= keys, f"config.example.yaml lacks {sorted(expected - keys)}"
    names = [i["name"] for i in data["interceptors"]]
    assert names == ["logging", "auth"]
    text = (ROOT / "config.example.yaml").read_text()
    for tls_key in ("cert_file", "key_file", "ca_file", "client_auth"):
        assert f"#   {tls_key}:" in text


def test_example_needs_its_token_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_COMM_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="environment variable 'NODE_COMM_TOKEN' is not set"):
        load_config(ROOT / "config.example.yaml")


async def test_example_loads_and_runs_in_memory_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_COMM_TOKEN", "example-token")
    config = load_config(ROOT / "config.example.yaml")
    assert config.node_id == "coordinator"
    assert config.transport.mode == "memory"
    assert (config.transport.grpc.host, config.transport.grpc.port) == ("127.0.0.1", 50051)
    assert config.interceptors[1].options["token"] == "example-token"

    coordinator = Node(config.node_id, config)
    participant = Node("participant", dataclasses.replace(config, node_id="participant"))
    assert [type(i).__name__ for i in coordinator.interceptors] == ["LoggingInterceptor", "AuthInterceptor"]

    async def train(payload: dict[str, int], ctx: object) -> dict[str, object]:
        return {"status": "completed", "epochs": payload["epochs"]}

    participant.register("train", train)
    async with coordinator, participant:
        await coordinator.connect("participant")
        result = await coordinator.call("participant", "train", {"epochs": 3})
    assert result == {"status": "completed", "epochs": 3}


def test_peers_load_into_peer_configs(write: Write) -> None:
    path = write(
        """
        node_id: a
        peers:
          - {node_id: b, address: "127.0.0.1:50052"}
          - node_id: c
        """
    )
    assert load_config(path).peers == [PeerConfig("b", "127.0.0.1:50052"), PeerConfig("c")]
    assert NodeConfig(node_id="a").peers == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("peers:\n  - {node_id: b, adress: 'h:1'}", "peers[0].adress: unknown key; did you mean 'address'?"),
        ("peers:\n  - {address: 'h:1'}", "peers[0].node_id: required key is missing"),
        ("peers: {b: 'h:1'}", "peers: expected a list, got"),
        ("peers:\n  - {node_id: a}", "peers[0].node_id: 'a' is this node's own id"),
        ("peers:\n  - {node_id: b}\n  - {node_id: b}", "peers[1].node_id: 'b' is listed twice"),
        ("peers:\n  - {node_id: ''}", "peers[0].node_id: expected a non-empty string"),
        ("peers:\n  - {node_id: b, address: ' '}", "peers[0].address: expected 'host:port' or null"),
        ("peers:\n  - {node_id: b, address: 5}", "peers[0].address: expected a string, got 5"),
    ],
)
def test_bad_peers(write: Write, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(write("node_id: a\n" + text + "\n"))
