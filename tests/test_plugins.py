"""Plugin discovery, blocking and limiting: YAML ``plugins:``, ``NODE_COMM_BLOCK_PLUGINS``,
``NODE_COMM_DISABLE_PLUGIN_AUTOLOAD``, plugins given in code, and fake entry points (pluggy-style,
by monkeypatching ``importlib.metadata.entry_points``) for broken and clashing plugins."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import node_comm
from node_comm import (
    ConfigError,
    Interceptor,
    MethodOptions,
    Node,
    NodeConfig,
    PluginsConfig,
    Serializer,
    TransportConfig,
    hookimpl,
    load_config,
)
from node_comm.plugins import ENV_BLOCK, ENV_NO_AUTOLOAD, clear_discovery_cache, discover
from node_comm_memory.transport import MemoryTransport

Register = Callable[..., None]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BLOCK, raising=False)
    monkeypatch.delenv(ENV_NO_AUTOLOAD, raising=False)


class UpperSerializer(Serializer):
    """Strings only, upper-cased on the wire: proves which serializer was used."""

    @property
    def name(self) -> str:
        return "upper"

    def serialize(self, obj: Any) -> bytes:
        return str(obj).upper().encode()

    def deserialize(self, data: bytes) -> Any:
        return data.decode()


class TagInterceptor(Interceptor):
    def __init__(self, tag: str = "tagged") -> None:
        self.tag = tag

    async def intercept_outbound(self, message: Any, context: Any, next_handler: Any) -> Any:
        message.metadata["tag"] = self.tag
        return await next_handler(message)


class InProcessPlugin:
    """An in-process plugin (llm-style): an object whose methods are hook implementations."""

    @hookimpl
    def node_comm_register_transports(self, register: Register) -> None:
        register("inproc", MemoryTransport)

    @hookimpl
    def node_comm_register_serializers(self, register: Register) -> None:
        register(UpperSerializer())

    @hookimpl
    def node_comm_register_interceptors(self, register: Register) -> None:
        register("tag", TagInterceptor)


@pytest.fixture
def inproc_plugin() -> InProcessPlugin:
    return InProcessPlugin()


# ---------------------------------------------------------------------------------------- fake entry points
@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``add(name, module_or_path)``: an extra entry point in group ``node_comm``. A module object is
    put in ``sys.modules`` under a unique name; a string is an import path that may not exist."""
    real = importlib.metadata.entry_points
    extra: list[importlib.metadata.EntryPoint] = []

    def fake(**params: Any) -> Any:
        found = real(**params)
        if params.get("group") == "node_comm":
            return [*found, *extra]
        return found

    def add(name: str, target: types.ModuleType | str) -> None:
        clear_discovery_cache()  # discovery is cached per process; a new entry point needs a fresh one
        if isinstance(target, types.ModuleType):
            modname = f"_nc_fake_plugin_{name.replace('-', '_')}"
            monkeypatch.setitem(sys.modules, modname, target)
            target = modname
        extra.append(importlib.metadata.EntryPoint(name=name, value=target, group="node_comm"))

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    yield add
    clear_discovery_cache()  # nothing found through the fake outlives the test


def make_module(**hooks: Callable[..., None]) -> types.ModuleType:
    module = types.ModuleType("fake")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def serializer_module() -> types.ModuleType:
    def node_comm_register_serializers(register: Register) -> None:
        register(UpperSerializer())

    return make_module(node_comm_register_serializers=node_comm_register_serializers)


# ---------------------------------------------------------------------------------------- discovery
def test_builtin_plugins_are_discovered_with_distribution_and_what_they_register() -> None:
    regs = discover()
    assert regs.plugins["memory"].distribution == "node-comm-memory"
    assert regs.plugins["memory"].transports == ["memory"]
    assert sorted(regs.plugins["serializers"].serializers) == ["json", "msgpack", "numpy", "pickle", "raw"]
    assert sorted(regs.plugins["interceptors"].interceptors) == ["acl", "auth", "logging", "metrics", "tracing"]
    assert regs.transports.provider("memory") == "memory"
    assert regs.skipped == {}


def test_fake_entry_point_is_discovered(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points("upper-plugin", serializer_module())
    regs = discover()
    assert "upper" in regs.serializers
    assert regs.serializers.provider("upper") == "upper-plugin"
    assert regs.plugins["upper-plugin"].serializers == ["upper"]


def test_unmarked_functions_are_not_hooks(fake_entry_points: Callable[..., None]) -> None:
    module = types.ModuleType("unmarked")

    def node_comm_register_serializers(register: Register) -> None:
        register(UpperSerializer())

    module.node_comm_register_serializers = node_comm_register_serializers  # type: ignore[attr-defined]
    fake_entry_points("unmarked", module)
    regs = discover()
    assert "upper" not in regs.serializers
    assert regs.plugins["unmarked"].serializers == []


def test_plugin_that_fails_to_import_is_named_with_how_to_block_it(
    fake_entry_points: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points("broken", "nc_no_such_module_xyz.plugin")
    with pytest.raises(ConfigError) as info:
        discover()
    msg = str(info.value)
    assert "plugin 'broken' (entry point 'nc_no_such_module_xyz.plugin') failed to import" in msg
    assert "NODE_COMM_BLOCK_PLUGINS=broken" in msg
    assert "plugins: {block: [broken]}" in msg
    # Node() reports it the same way
    with pytest.raises(ConfigError, match="plugin 'broken'"):
        Node("n")
    # ... and blocking it, by env or YAML, works: the module is never imported
    monkeypatch.setenv(ENV_BLOCK, "broken")
    assert discover().skipped == {"broken": "blocked"}
    monkeypatch.delenv(ENV_BLOCK)
    assert "broken" in discover(PluginsConfig(block=["broken"])).skipped


def test_plugin_raising_in_its_hook_is_named(fake_entry_points: Callable[..., None]) -> None:
    def node_comm_register_transports(register: Register) -> None:
        raise RuntimeError("boom")

    fake_entry_points("explodes", make_module(node_comm_register_transports=node_comm_register_transports))
    with pytest.raises(
        ConfigError,
        match=r"plugin 'explodes' failed in node_comm_register_transports: "
        r"RuntimeError\('boom'\).*NODE_COMM_BLOCK_PLUGINS=explodes",
    ):
        discover()


def test_plugin_with_a_misspelled_hook_is_named(fake_entry_points: Callable[..., None]) -> None:
    def node_comm_register_tranports(register: Register) -> None:
        pass

    fake_entry_points("typo", make_module(node_comm_register_tranports=node_comm_register_tranports))
    with pytest.raises(ConfigError, match="implements an unknown hook") as info:
        discover()
    assert "node_comm_register_tranports" in str(info.value)


def test_plugin_registering_a_non_serializer(fake_entry_points: Callable[..., None]) -> None:
    def node_comm_register_serializers(register: Register) -> None:
        register("not a serializer")

    fake_entry_points("bad-ser", make_module(node_comm_register_serializers=node_comm_register_serializers))
    with pytest.raises(ConfigError, match="plugin 'bad-ser' registered 'not a serializer', which is not"):
        discover()


def test_two_plugins_registering_one_name(
    fake_entry_points: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    def node_comm_register_transports(register: Register) -> None:
        register("memory", MemoryTransport)

    fake_entry_points("impostor", make_module(node_comm_register_transports=node_comm_register_transports))
    with pytest.raises(ConfigError) as info:
        discover()
    msg = str(info.value)
    assert "transport 'memory' is registered by both plugin" in msg
    assert "'impostor'" in msg and "'memory'" in msg
    assert "block one of them" in msg
    # the fix the message gives works
    monkeypatch.setenv(ENV_BLOCK, "impostor")
    assert discover().transports.provider("memory") == "memory"


def test_two_fake_plugins_registering_one_serializer(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points("upper-a", serializer_module())
    fake_entry_points("upper-b", serializer_module())
    with pytest.raises(ConfigError) as info:
        discover()
    assert "serializer 'upper' is registered by both plugin 'upper-a' and 'upper-b'" in str(info.value)
    assert "NODE_COMM_BLOCK_PLUGINS=upper-b" in str(info.value)
    assert discover(PluginsConfig(block=["upper-b"])).serializers.provider("upper") == "upper-a"


# ---------------------------------------------------------------------------------------- blocking
def test_blocked_transport_is_a_config_error_listing_available(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node_id: n\ntransport: {mode: memory}\nplugins: {block: [memory]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "transport.mode: transport 'memory' is not installed; available: grpc" in msg
    assert "plugins.block/only" in msg
    config = NodeConfig(node_id="n", plugins=PluginsConfig(block=["memory"]))
    with pytest.raises(ConfigError, match="transport 'memory' is not installed; available: grpc"):
        Node("n", config)


def test_env_block_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BLOCK, " memory , interceptors ")
    regs = discover()
    assert "memory" not in regs.plugins and "interceptors" not in regs.plugins
    assert regs.skipped == {"memory": "blocked", "interceptors": "blocked"}
    assert regs.interceptors.names() == []
    with pytest.raises(ConfigError, match="transport 'memory' is not installed; available: grpc"):
        Node("n")


def test_env_block_adds_to_yaml_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BLOCK, "grpc")
    regs = discover(PluginsConfig(block=["interceptors"]))
    assert regs.skipped == {"grpc": "blocked", "interceptors": "blocked"}
    assert regs.transports.names() == ["memory", "nats"]


def test_only_limits_entry_points(tmp_path: Path) -> None:
    regs = discover(PluginsConfig(only=["memory", "serializers"]))
    assert sorted(regs.plugins) == ["memory", "serializers"]
    assert regs.skipped == dict.fromkeys(["grpc", "interceptors", "nats"], "not in plugins.only")
    path = tmp_path / "node.yaml"
    path.write_text("node_id: n\nplugins: {only: [memory, serializers]}\ninterceptors: [{name: logging}]\n")
    with pytest.raises(
        ConfigError,
        match=r"interceptors\[0\]\.name: interceptor 'logging' is not installed; "
        r"available: none",
    ):
        load_config(path)


def test_blocked_serializer_plugin_falls_back_to_stdlib_json() -> None:
    regs = discover(PluginsConfig(block=["serializers"]))
    assert regs.serializers.names() == ["json"]
    assert regs.serializers.provider("json") == "node_comm (stdlib fallback)"


# ---------------------------------------------------------------------------------------- plugins in code
async def test_autoload_off_with_plugins_passed_in_code(inproc_plugin: InProcessPlugin) -> None:
    import node_comm_memory.plugin as memory_plugin

    config = NodeConfig(node_id="code-a", plugins=PluginsConfig(autoload=False))
    regs = discover(config.plugins, [memory_plugin, inproc_plugin])
    assert regs.transports.names() == ["memory", "inproc"]  # the default first
    assert regs.serializers.names() == ["json", "upper"]
    assert regs.plugins["InProcessPlugin"].transports == ["inproc"]
    assert regs.plugins["InProcessPlugin"].distribution is None
    assert set(regs.skipped.values()) == {"autoload disabled"}

    with pytest.raises(ConfigError, match="transport 'memory' is not installed; available: none"):
        Node("code-a", config)

    config.transport = TransportConfig(mode="inproc")
    a = Node("code-a", config, plugins=[inproc_plugin])
    b = Node(
        "code-b",
        NodeConfig(node_id="code-b", transport=TransportConfig(mode="inproc"), plugins=PluginsConfig(autoload=False)),
        plugins=[inproc_plugin],
    )
    seen: dict[str, Any] = {}

    async def shout(payload: str, ctx: Any) -> str:
        seen["payload"] = payload
        return payload

    b.register("shout", shout, options=MethodOptions(serializer="upper"))
    async with a, b:
        await a.connect("code-b")
        assert await a.call("code-b", "shout", "hello", serializer="upper") == "HELLO"
    assert seen["payload"] == "HELLO"  # the in-code serializer encoded it


async def test_in_code_interceptor_selected_from_yaml(tmp_path: Path, inproc_plugin: InProcessPlugin) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(
        "node_id: ${NC_ID}\n"
        "transport: {mode: inproc}\n"
        "plugins: {autoload: false}\n"
        "interceptors: [{name: tag, options: {tag: from-yaml}}]\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NC_ID", "yaml-a")
        # Without the in-code plugin the names are unknown at load time...
        with pytest.raises(ConfigError, match="transport 'inproc' is not installed; available: none"):
            load_config(path)
        # ... with it, the file loads and the node uses the plugin's transport and interceptor.
        config_a = load_config(path, plugins=[inproc_plugin])
        mp.setenv("NC_ID", "yaml-b")
        config_b = load_config(path, plugins=[inproc_plugin])
    a = Node(config=config_a, plugins=[inproc_plugin])
    b = Node(config=config_b, plugins=[inproc_plugin])
    assert isinstance(a.transport, MemoryTransport)

    async def meta(payload: Any, ctx: Any) -> str:
        return str(ctx.metadata.get("tag"))

    b.register("meta", meta)
    async with a, b:
        await a.connect("yaml-b")
        assert await a.call("yaml-b", "meta", None) == "from-yaml"


def test_env_disables_autoload(monkeypatch: pytest.MonkeyPatch, inproc_plugin: InProcessPlugin) -> None:
    monkeypatch.setenv(ENV_NO_AUTOLOAD, "1")
    regs = discover(plugins=[inproc_plugin])
    assert list(regs.plugins) == ["InProcessPlugin"]
    builtin = ["grpc", "interceptors", "memory", "nats", "serializers"]
    assert regs.skipped == dict.fromkeys(builtin, "autoload disabled")


def test_same_plugin_in_code_and_as_entry_point_loads_once() -> None:
    import node_comm_memory.plugin as memory_plugin

    regs = discover(plugins=[memory_plugin])
    assert regs.transports.names() == ["memory", "grpc", "nats"]  # the default first, the rest sorted


def test_two_instances_of_one_plugin_class_clash_by_name() -> None:
    """Two in-code plugins get distinct names, so a clash names both."""
    with pytest.raises(ConfigError) as info:
        discover(PluginsConfig(autoload=False), [InProcessPlugin(), InProcessPlugin()])
    assert "registered by both plugin 'InProcessPlugin' and 'InProcessPlugin-2'" in str(info.value)


def test_blocking_an_in_code_plugin_by_name(inproc_plugin: InProcessPlugin) -> None:
    regs = discover(PluginsConfig(autoload=False, block=["InProcessPlugin"]), [inproc_plugin])
    assert regs.plugins == {}


# ---------------------------------------------------------------------------------------- discovery cache
def test_discovery_runs_once_per_process_for_the_same_settings(fake_entry_points: Callable[..., None]) -> None:
    calls: list[int] = []

    def node_comm_register_serializers(register: Register) -> None:
        calls.append(1)
        register(UpperSerializer())

    fake_entry_points("counted", make_module(node_comm_register_serializers=node_comm_register_serializers))
    Node("a")
    Node("b")
    node_comm.config_from_dict({"node_id": "c"})
    assert discover() is discover()
    assert calls == [1]  # one discovery for all of them


def test_discovery_cache_follows_plugin_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = discover()
    assert discover(PluginsConfig(block=["serializers"])) is not everything
    assert "msgpack" not in discover(PluginsConfig(block=["serializers"])).serializers
    monkeypatch.setenv(ENV_BLOCK, "serializers")
    assert "msgpack" not in discover().serializers  # the environment is part of the settings
    monkeypatch.delenv(ENV_BLOCK)
    assert discover() is everything


def test_in_code_plugins_bypass_the_discovery_cache(inproc_plugin: InProcessPlugin) -> None:
    cached = discover()
    with_code = discover(plugins=[inproc_plugin])
    assert with_code is not cached and "inproc" in with_code.transports
    assert "inproc" not in discover().transports


# ---------------------------------------------------------------------------------------- one registry type
def test_node_serializers_share_the_registry_ordering_and_wording() -> None:
    node = Node("a")
    assert node.serializers.names()[0] == "json"
    assert node.serializers.names()[1:] == sorted(node.serializers.names()[1:])
    with pytest.raises(
        ConfigError, match=r"serializer 'msgpak' is not installed; did you mean 'msgpack'\? available: json, "
    ):
        node.serializers.get("msgpak")
    with pytest.raises(ConfigError, match=r"transport 'zmq' is not installed; available: memory, grpc"):
        discover().transports.get("zmq")
    node._serializer_registry.register(UpperSerializer())  # the seed's API
    assert node.serializers.get("upper").name == "upper"
    assert "upper" not in Node("b").serializers  # a node's registrations are its own


def test_hooks_get_typed_register_callables_through_pm_hook() -> None:
    from node_comm.registry import InterceptorRegister, SerializerRegister, TransportRegister

    seen: dict[str, object] = {}
    wrapped: list[str] = []

    class Typed:
        @hookimpl
        def node_comm_register_transports(self, register: TransportRegister) -> None:
            seen["transports"] = register

        @hookimpl
        def node_comm_register_serializers(self, register: SerializerRegister) -> None:
            seen["serializers"] = register
            register(UpperSerializer())

        @hookimpl
        def node_comm_register_interceptors(self, register: InterceptorRegister) -> None:
            seen["interceptors"] = register

    class Wrapper:
        @hookimpl(wrapper=True)
        def node_comm_register_serializers(self, register: SerializerRegister) -> Any:
            wrapped.append("serializers")  # only runs when the hook is called through pm.hook
            return (yield)

    regs = discover(plugins=[Typed(), Wrapper()])
    assert isinstance(seen["transports"], TransportRegister)
    assert isinstance(seen["serializers"], SerializerRegister)
    assert isinstance(seen["interceptors"], InterceptorRegister)
    assert wrapped and regs.serializers.provider("upper").endswith("Typed")
    assert regs.serializers.provider("msgpack") == "serializers"


def test_transport_registration_carries_its_options_type() -> None:
    from dataclasses import dataclass

    @dataclass
    class LoopOptions:
        depth: int = 1

    class Loop:
        @hookimpl
        def node_comm_register_transports(self, register: Any) -> None:
            register("loop", lambda options: MemoryTransport(None), options_class=LoopOptions)

    regs = discover(plugins=[Loop()])
    assert regs.transports.get("loop").options_class is LoopOptions
    config = node_comm.config_from_dict(
        {"node_id": "n", "transport": {"mode": "loop", "loop": {"depth": "3"}}}, plugins=[Loop()]
    )
    assert config.transport.loop == LoopOptions(depth=3)
