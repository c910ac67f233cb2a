"""``TransportConfig`` names no transport: a section is given and read back under its transport's
name, as a keyword or in ``options``, and is checked against the options type its plugin declares."""

from __future__ import annotations

import pytest

from node_comm import ConfigError, GrpcTransportConfig, MemoryTransportConfig, Node, NodeConfig, TransportConfig
from node_comm_memory.config import MemoryTransportConfig as PluginMemoryTransportConfig


def test_keyword_sections_are_options_by_name() -> None:
    grpc = GrpcTransportConfig(host="127.0.0.1", port=0)
    tc = TransportConfig(mode="grpc", grpc=grpc)
    assert tc == TransportConfig(mode="grpc", options={"grpc": grpc})
    assert tc.grpc is grpc and tc.section("grpc") is grpc
    assert tc.memory is None and tc.section("memory") is None
    assert TransportConfig(grpc=None).options == {}


def test_memory_options_type_comes_from_the_plugin() -> None:
    assert MemoryTransportConfig is PluginMemoryTransportConfig
    node = Node("a", NodeConfig(node_id="a", transport=TransportConfig(memory=MemoryTransportConfig(latency=0.5))))
    assert node.transport.options == MemoryTransportConfig(latency=0.5)


def test_section_of_another_type_is_checked_against_the_plugin_options() -> None:
    bad = TransportConfig(mode="memory", options={"memory": {"latncy": 1}})
    with pytest.raises(ConfigError, match=r"transport\.memory\.latncy: unknown key; did you mean 'latency'\?"):
        Node("a", NodeConfig(node_id="a", transport=bad))
