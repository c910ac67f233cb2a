"""One assembly step builds a node's parts from a config; reading a config builds nothing a node
keeps and changes nothing it is given."""

from __future__ import annotations

import copy
from pathlib import Path

from node_comm import InterceptorConfig, Node, NodeConfig, config_from_dict, load_config
from node_comm.assembly import assemble
from node_comm.interceptor import InterceptorChain
from node_comm.registry import SerializerRegistry
from node_comm_memory.transport import MemoryTransport

AUTH = {"token": "${NC_ASSEMBLY_TOKEN:-tok}", "max_skew": "10"}


def test_config_from_dict_does_not_change_its_input() -> None:
    data = {
        "node_id": "n",
        "transport": {"mode": "memory", "memory": {"latency": 0}},
        "interceptors": [{"name": "auth", "options": dict(AUTH)}, {"name": "logging", "options": None}],
    }
    before = copy.deepcopy(data)
    config = config_from_dict(data)
    assert data == before
    assert config.interceptors[0].options == {"token": "tok", "max_skew": 10.0}  # typed as declared


def test_load_config_returns_plain_data(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text("node_id: n\ninterceptors:\n  - {name: auth, options: {token: tok}}\n")
    config = load_config(path)
    assert config.interceptors == [InterceptorConfig("auth", {"token": "tok"})]


def test_node_does_not_change_the_config_it_is_given() -> None:
    config = NodeConfig(node_id="n", interceptors=[InterceptorConfig("auth", {"token": "tok", "max_skew": "10"})])
    Node("n", config)
    assert config.interceptors[0].options == {"token": "tok", "max_skew": "10"}


def test_assemble_builds_the_parts_of_a_node() -> None:
    config = NodeConfig(node_id="n", interceptors=[InterceptorConfig("auth", {"token": "tok"})])
    parts = assemble(config)
    assert isinstance(parts.transport, MemoryTransport)
    assert isinstance(parts.serializers, SerializerRegistry) and "json" in parts.serializers
    assert isinstance(parts.interceptors, InterceptorChain) and len(parts.interceptors._items) == 1
    assert parts.serializers.provider("msgpack") == "serializers"  # provenance kept
    # Each node gets its own serializers and transport, over one discovery.
    other = assemble(config)
    assert other.registries is parts.registries
    assert other.serializers is not parts.serializers and other.transport is not parts.transport
