"""Plugin discovery and the three registries filled by the hooks.

Load order, as pluggy recommends: add the hook specs, register plugins given in code, load the
entry points of group ``node_comm`` (minus blocked ones), then check every hookimpl matches a spec.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .exceptions import ConfigError
from .registry import (
    InterceptorRegister,
    Provided,
    Registry,
    SerializerRegister,
    TransportEntry,
    TransportRegister,
)
from .serializer import Serializer, StdlibJsonSerializer

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_BLOCK",
    "ENV_NO_AUTOLOAD",
    "PluginInfo",
    "PluginsConfig",
    "Provided",
    "Registries",
    "Registry",
    "clear_discovery_cache",
    "collect",
    "discover",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "node_comm"
#: Comma-separated entry-point names that are never loaded.
ENV_BLOCK = "NODE_COMM_BLOCK_PLUGINS"
#: Set to 1 to load no entry point at all (only plugins passed in code).
ENV_NO_AUTOLOAD = "NODE_COMM_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class PluginsConfig:
    """Which discovered plugins load: ``block`` names never load; ``only``, when set, is the full
    list allowed; ``autoload: false`` loads none (plugins must then be passed in code)."""

    autoload: bool = True
    block: list[str] = field(default_factory=list)
    only: list[str] | None = None


@dataclass
class PluginInfo:
    """A loaded plugin: its entry-point name, distribution and version, and what it registered."""

    name: str
    distribution: str | None = None
    version: str | None = None
    transports: list[str] = field(default_factory=list)
    serializers: list[str] = field(default_factory=list)
    interceptors: list[str] = field(default_factory=list)


@dataclass
class Registries:
    """What the installed plugins provide, and the plugins themselves."""

    transports: Registry[TransportEntry] = field(default_factory=lambda: Registry("transport", default="memory"))
    serializers: Registry[Serializer] = field(default_factory=lambda: Registry("serializer", default="json"))
    interceptors: Registry[Callable[..., Any]] = field(default_factory=lambda: Registry("interceptor"))
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    #: Entry points found but not loaded, and why ("blocked", "not in plugins.only", ...).
    skipped: dict[str, str] = field(default_factory=dict)


def _env_blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(ENV_BLOCK, "").split(",") if n.strip()}


def _env_no_autoload() -> bool:
    return os.environ.get(ENV_NO_AUTOLOAD, "").strip().lower() in ("1", "true", "yes", "on")


class NodeCommPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers each entry point's distribution, and which entry
    points were not loaded (blocked, not in ``only``, autoload off) and why."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.dist_info: dict[str, tuple[str | None, str | None]] = {}
        self.skipped: dict[str, str] = {}


def _code_plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    """A readable, unique name for a plugin passed in code: its module or class name."""
    base = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    name, n = str(base), 2
    while pm.get_plugin(name) is not None or pm.is_blocked(name):
        if pm.is_blocked(base):
            return str(base)  # let pluggy refuse it as blocked
        name, n = f"{base}-{n}", n + 1
    return name


def make_plugin_manager(config: PluginsConfig | None = None, plugins: Iterable[object] = ()) -> NodeCommPluginManager:
    """A fresh plugin manager: hook specs, ``plugins`` given in code, then the allowed entry points.

    ``config.block`` and ``$NODE_COMM_BLOCK_PLUGINS`` (comma-separated) name plugins that never load;
    ``config.only`` limits entry points to the names listed; ``config.autoload: false`` or
    ``$NODE_COMM_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry point (only ``plugins`` given in code).
    """
    config = config or PluginsConfig()
    pm = NodeCommPluginManager()
    pm.add_hookspecs(hookspecs)
    blocked = set(config.block) | _env_blocked()
    for name in blocked:
        pm.set_blocked(name)
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin, name=_code_plugin_name(pm, plugin))
    autoload = config.autoload and not _env_no_autoload()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or ep.name in pm.dist_info:
            continue  # the same distribution seen twice on sys.path, or also given in code
        if pm.is_blocked(ep.name):
            pm.skipped[ep.name] = "blocked"
            continue
        if not autoload:
            pm.skipped[ep.name] = "autoload disabled"
            continue
        if config.only is not None and ep.name not in config.only:
            pm.skipped[ep.name] = "not in plugins.only"
            continue
        try:
            module = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: {exc!r}; "
                f"fix or uninstall it, or block it with {ENV_BLOCK}={ep.name} "
                f"(or plugins: {{block: [{ep.name}]}} in YAML)"
            ) from exc
        dist = getattr(ep, "dist", None)
        pm.dist_info[ep.name] = (dist.name, dist.version) if dist is not None else (None, None)
        if pm.is_registered(module):
            continue  # already given in code
        pm.register(module, name=ep.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(
            f"plugin {exc.plugin!r} implements an unknown hook: {exc}; "
            f"upgrade node-comm or the plugin, or block it with {ENV_BLOCK}"
        ) from exc
    return pm


def collect(pm: pluggy.PluginManager) -> Registries:
    """Call the registration hooks of every plugin in ``pm`` (through ``pm.hook``) and gather what
    they register, remembering which plugin provided each name (two plugins providing one name is
    an error)."""
    regs = Registries(skipped=dict(getattr(pm, "skipped", {})))
    dist_info: dict[str, tuple[str | None, str | None]] = getattr(pm, "dist_info", {})
    for name in sorted(n for n, p in pm.list_name_plugin() if p is not None):  # None: blocked
        dist, version = dist_info.get(name, (None, None))
        regs.plugins[name] = PluginInfo(name, dist, version)

    def transports(plugin: str) -> TransportRegister:
        def add(tname: str, entry: TransportEntry) -> None:
            if not callable(entry.factory):
                raise ConfigError(f"plugin {plugin!r} registered transport {tname!r} with a non-callable factory")
            regs.transports.add(tname, entry, plugin)
            regs.plugins[plugin].transports.append(tname)

        return TransportRegister(add)

    def serializers(plugin: str) -> SerializerRegister:
        def add(serializer: Serializer) -> None:
            if not isinstance(serializer, Serializer):
                raise ConfigError(f"plugin {plugin!r} registered {serializer!r}, which is not a node_comm.Serializer")
            regs.serializers.add(serializer.name, serializer, plugin)
            regs.plugins[plugin].serializers.append(serializer.name)

        return SerializerRegister(add)

    def interceptors(plugin: str) -> InterceptorRegister:
        def add(iname: str, factory: Callable[..., Any]) -> None:
            if not callable(factory):
                raise ConfigError(f"plugin {plugin!r} registered interceptor {iname!r} with a non-callable factory")
            regs.interceptors.add(iname, factory, plugin)
            regs.plugins[plugin].interceptors.append(iname)

        return InterceptorRegister(add)

    registers: list[tuple[str, Callable[[str], object]]] = [
        ("node_comm_register_transports", transports),
        ("node_comm_register_serializers", serializers),
        ("node_comm_register_interceptors", interceptors),
    ]
    for hook, make_register in registers:
        # One call through pluggy per plugin (a subset caller holding only that plugin's
        # implementation, plus any wrappers), in registration order (code plugins, then entry
        # points), so each plugin gets a register that records it as the provider.
        impls = getattr(pm.hook, hook).get_hookimpls()
        owners = [impl.plugin for impl in impls if not (impl.hookwrapper or impl.wrapper)]
        for impl in impls:
            if impl.hookwrapper or impl.wrapper:
                continue
            plugin = impl.plugin_name
            if plugin not in regs.plugins:
                regs.plugins[plugin] = PluginInfo(plugin)
            others = [p for p in owners if p is not impl.plugin]
            caller = pm.subset_hook_caller(hook, remove_plugins=others)
            try:
                caller(register=make_register(plugin))
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(
                    f"plugin {plugin!r} failed in {hook}: {exc!r}; fix or uninstall it, "
                    f"or block it with {ENV_BLOCK}={plugin}"
                ) from exc
    if "json" not in regs.serializers:
        regs.serializers.add("json", StdlibJsonSerializer(), "node_comm (stdlib fallback)")
    return regs


#: Registries found per plugin settings, so discovery (importing and calling every installed
#: plugin) runs once per process, not once per ``load_config`` and ``Node``.
_discovered: dict[tuple[object, ...], Registries] = {}


def _settings_key(config: PluginsConfig) -> tuple[object, ...]:
    """What decides which entry points load: the ``plugins:`` section and the two variables."""
    only = None if config.only is None else tuple(sorted(config.only))
    return (
        config.autoload,
        tuple(sorted(config.block)),
        only,
        os.environ.get(ENV_BLOCK, ""),
        os.environ.get(ENV_NO_AUTOLOAD, ""),
    )


def discover(config: PluginsConfig | None = None, plugins: Iterable[object] = ()) -> Registries:
    """The registries of the installed plugins (as allowed by ``config`` and the environment) plus
    ``plugins`` given in code.

    Without in-code plugins the result is cached per plugin settings for the life of the process
    (treat it as read-only); with them, discovery runs afresh (their hooks may register anything).
    Errors are never cached. :func:`clear_discovery_cache` forgets what was found (after installing
    a plugin at run time, or in tests that fake entry points)."""
    config = config or PluginsConfig()
    plugins = list(plugins)
    if plugins:
        return collect(make_plugin_manager(config, plugins))
    key = _settings_key(config)
    found = _discovered.get(key)
    if found is None:
        found = _discovered[key] = collect(make_plugin_manager(config))
    return found


def clear_discovery_cache() -> None:
    """Forget the registries :func:`discover` cached; the next call imports the plugins again."""
    _discovered.clear()
