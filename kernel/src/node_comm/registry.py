"""Named things of one kind (transports, serializers, interceptors), who provided each, and the
typed ``register`` callables plugin hooks receive.

One :class:`Registry` type serves all three kinds and a node's own serializers
(``node.serializers``): one ordering (the default first, then sorted) and one error wording
(``transport 'zmq' is not installed; available: memory, grpc``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .exceptions import ConfigError

if TYPE_CHECKING:
    from .serializer import Serializer
    from .transport import Transport

T = TypeVar("T")

#: Where the hint of a "not installed" error points (kept in sync with plugins.ENV_BLOCK).
_ENV_BLOCK = "NODE_COMM_BLOCK_PLUGINS"


@dataclass(frozen=True)
class Provided(Generic[T]):
    """One registered thing and who provided it."""

    name: str
    obj: T
    plugin: str


class Registry(Generic[T]):
    """Named things of one kind, with provenance (which plugin registered each name)."""

    def __init__(self, kind: str, default: str | None = None) -> None:
        self.kind = kind
        #: Listed first wherever names are shown (``available: memory, grpc``), the rest sorted.
        self.default = default
        self._items: dict[str, Provided[T]] = {}

    def add(self, name: str, obj: T, plugin: str, *, replace: bool = False) -> None:
        """Register ``obj`` as ``name`` for ``plugin``. Two plugins registering one name is a
        :class:`ConfigError` unless ``replace`` (a later registration wins)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        old = self._items.get(name)
        if old is not None and old.plugin != plugin and not replace:
            raise ConfigError(
                f"{self.kind} {name!r} is registered by both plugin {old.plugin!r} and {plugin!r}; "
                f"uninstall or block one of them (e.g. plugins: {{block: [{plugin}]}} in YAML, "
                f"or {_ENV_BLOCK}={plugin})"
            )
        self._items[name] = Provided(name, obj, plugin)

    def get(self, name: str) -> T:
        """The object registered as ``name``; else a :class:`ConfigError` listing what is available."""
        try:
            return self._items[name].obj
        except KeyError:
            available = ", ".join(self.names()) or "none"
            close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{self.kind} {name!r} is not installed; {hint}available: {available}"
                f" (install the plugin that provides it, or check plugins.block/only and {_ENV_BLOCK})"
            ) from None

    def provider(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._items[name].plugin

    def names(self) -> list[str]:
        """Registered names: the default first, then the others sorted."""
        first = [self.default] if self.default in self._items else []
        return first + sorted(n for n in self._items if n != self.default)

    def items(self) -> list[Provided[T]]:
        return [self._items[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


class SerializerRegistry(Registry["Serializer"]):
    """Serializers by name, one registry per node (``node.serializers``, ``node._serializer_registry``)."""

    #: Provenance of serializers registered on a node at run time.
    LOCAL = "registered in code"

    def __init__(self, serializers: dict[str, Serializer] | None = None) -> None:
        super().__init__("serializer", default="json")
        for serializer in (serializers or {}).values():
            self.register(serializer)

    def register(self, serializer: Serializer, *, replace: bool = True) -> None:
        """Add ``serializer`` under ``serializer.name`` (replacing one of the same name by default)."""
        from .serializer import Serializer

        if not isinstance(serializer, Serializer):
            raise TypeError(f"expected a node_comm.Serializer, got {type(serializer).__name__}")
        name = serializer.name
        if not replace and name in self:
            raise ConfigError(f"serializer {name!r} is already registered")
        self.add(name, serializer, self.LOCAL, replace=True)

    @classmethod
    def of(cls, registry: Registry[Serializer]) -> SerializerRegistry:
        """A node's own registry, starting with what ``registry`` holds (provenance kept)."""
        own = cls()
        own._items = dict(registry._items)
        return own


class TransportEntry:
    """A registered transport: its factory and the options type its YAML section is checked
    against. Calling it calls the factory; ``options_class`` is resolved when first read, so a
    factory that imports its transport lazily stays lazy."""

    def __init__(self, name: str, factory: Callable[[Any], Transport], options_class: type[Any] | None = None) -> None:
        self.name = name
        self.factory = factory
        self._options_class = options_class

    @property
    def options_class(self) -> type[Any] | None:
        if self._options_class is not None:
            return self._options_class
        found: type[Any] | None = getattr(self.factory, "options_class", None)
        return found

    def __call__(self, options: Any = None) -> Transport:
        return self.factory(options)

    def __repr__(self) -> str:
        return f"TransportEntry({self.name!r}, {self.factory!r})"


class TransportRegister:
    """The ``register`` a ``node_comm_register_transports`` hook receives:
    ``register(name, factory, options_class=None)``. ``factory(options)`` returns a
    :class:`~node_comm.transport.Transport`; ``options_class`` (default: ``factory.options_class``)
    is the dataclass the YAML section ``transport.NAME`` is validated into."""

    def __init__(self, add: Callable[[str, TransportEntry], None]) -> None:
        self._add = add

    def __call__(
        self, name: str, factory: Callable[[Any], Transport], *, options_class: type[Any] | None = None
    ) -> None:
        self._add(name, TransportEntry(name, factory, options_class))


class SerializerRegister:
    """The ``register`` a ``node_comm_register_serializers`` hook receives: ``register(serializer)``,
    named by ``serializer.name``."""

    def __init__(self, add: Callable[[Serializer], None]) -> None:
        self._add = add

    def __call__(self, serializer: Serializer) -> None:
        self._add(serializer)


class InterceptorRegister:
    """The ``register`` a ``node_comm_register_interceptors`` hook receives:
    ``register(name, factory)``; YAML ``interceptors: [{name: NAME, options: {...}}]`` builds
    ``factory(**options)``, an :class:`~node_comm.interceptor.Interceptor`."""

    def __init__(self, add: Callable[[str, Callable[..., Any]], None]) -> None:
        self._add = add

    def __call__(self, name: str, factory: Callable[..., Any]) -> None:
        self._add(name, factory)
