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
from .serializer import Serializer, StdlibJsonSerializer

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


@dataclass(frozen=True)
class Provided:
    """One registered thing and who provided it."""

    name: str
    obj: Any
    plugin: str


@dataclass
class PluginInfo:
    """A loaded plugin: its entry-point name, distribution and version, and what it registered."""

    name: str
    distribution: str | None = None
    version: str | None = None
    transports: list[str] = field(default_factory=list)
    serializers: list[str] = field(default_factory=list)
    interceptors: list[str] = field(default_factory=list)


class Registry:
    """Named things of one kind (transport, serializer, interceptor), with provenance."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Provided] = {}

    def add(self, name: str, obj: Any, plugin: str) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        old = self._items.get(name)
        if old is not None and old.plugin != plugin:
            raise ConfigError(
                f"{self.kind} {name!r} is registered by both plugin {old.plugin!r} and {plugin!r}; "
                f"block one of them (plugins.block in YAML, or {ENV_BLOCK})"
            )
        self._items[name] = Provided(name, obj, plugin)

    def get(self, name: str) -> Any:
        """The object registered as ``name``; else a :class:`ConfigError` listing what is available."""
        try:
            return self._items[name].obj
        except KeyError:
            available = ", ".join(self.names()) or "none"
            raise ConfigError(
                f"{self.kind} {name!r} is not installed; available: {available}"
                f" (a plugin providing it may not be installed, or is blocked)"
            ) from None

    def provider(self, name: str) -> str:
        return self._items[name].plugin

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[Provided]:
        return [self._items[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items


@dataclass
class Registries:
    """What the installed plugins provide, and the plugins themselves."""

    transports: Registry = field(default_factory=lambda: Registry("transport"))
    serializers: Registry = field(default_factory=lambda: Registry("serializer"))
    interceptors: Registry = field(default_factory=lambda: Registry("interceptor"))
    plugins: dict[str, PluginInfo] = field(default_factory=dict)


def _env_blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(ENV_BLOCK, "").split(",") if n.strip()}


def make_plugin_manager(
    config: PluginsConfig | None = None, plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """A fresh plugin manager: hook specs, ``plugins`` given in code, then the allowed entry points."""
    config = config or PluginsConfig()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    blocked = set(config.block) | _env_blocked()
    for name in blocked:
        pm.set_blocked(name)
    autoload = config.autoload and os.environ.get(ENV_NO_AUTOLOAD, "") not in ("1", "true", "yes")
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            if config.only is not None and ep.name not in config.only:
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise ConfigError(
                    f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: {exc!r}; "
                    f"fix or uninstall it, or block it with {ENV_BLOCK}={ep.name}"
                ) from exc
            pm.register(module, name=ep.name)
            dist = getattr(ep, "dist", None)
            pm._nc_dist_info = getattr(pm, "_nc_dist_info", {})  # type: ignore[attr-defined]
            pm._nc_dist_info[ep.name] = (  # type: ignore[attr-defined]
                (dist.name, dist.version) if dist is not None else (None, None)
            )
    pm.check_pending()
    return pm


def collect(pm: pluggy.PluginManager) -> Registries:
    """Call the registration hooks of every plugin in ``pm`` and gather what they register."""
    regs = Registries()
    dist_info: dict[str, tuple[str | None, str | None]] = getattr(pm, "_nc_dist_info", {})
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        dist, version = dist_info.get(name, (None, None))
        info = PluginInfo(name, dist, version)
        regs.plugins[name] = info

        def add_transport(tname: str, factory: Callable[..., Any], _p: str = name, _i: PluginInfo = info) -> None:
            if not callable(factory):
                raise ConfigError(f"plugin {_p!r} registered transport {tname!r} with a non-callable factory")
            regs.transports.add(tname, factory, _p)
            _i.transports.append(tname)

        def add_serializer(serializer: Any, _p: str = name, _i: PluginInfo = info) -> None:
            if not isinstance(serializer, Serializer):
                raise ConfigError(
                    f"plugin {_p!r} registered {serializer!r}, which is not a node_comm.Serializer"
                )
            regs.serializers.add(serializer.name, serializer, _p)
            _i.serializers.append(serializer.name)

        def add_interceptor(iname: str, factory: Callable[..., Any], _p: str = name, _i: PluginInfo = info) -> None:
            if not callable(factory):
                raise ConfigError(f"plugin {_p!r} registered interceptor {iname!r} with a non-callable factory")
            regs.interceptors.add(iname, factory, _p)
            _i.interceptors.append(iname)

        for hook, register in (
            ("node_comm_register_transports", add_transport),
            ("node_comm_register_serializers", add_serializer),
            ("node_comm_register_interceptors", add_interceptor),
        ):
            impl = getattr(plugin, hook, None)
            if impl is not None and callable(impl):
                try:
                    impl(register=register)
                except ConfigError:
                    raise
                except Exception as exc:
                    raise ConfigError(
                        f"plugin {name!r} failed in {hook}: {exc!r}; fix or uninstall it, "
                        f"or block it with {ENV_BLOCK}={name}"
                    ) from exc
    if "json" not in regs.serializers:
        regs.serializers.add("json", StdlibJsonSerializer(), "node_comm (stdlib fallback)")
    return regs


def discover(config: PluginsConfig | None = None, plugins: Iterable[object] = ()) -> Registries:
    """Build a fresh plugin manager and collect its registries in one step."""
    return collect(make_plugin_manager(config, plugins))
