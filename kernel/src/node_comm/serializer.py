"""Serializer base class and the per-node serializer registry."""

from __future__ import annotations

import abc
import json
from typing import Any

from .exceptions import ConfigError


class Serializer(abc.ABC):
    """Turns payloads into bytes and back. Subclasses give a unique :attr:`name`."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The name methods and calls refer to (``MethodOptions(serializer=NAME)``)."""

    @abc.abstractmethod
    def serialize(self, obj: Any) -> bytes:
        """Encode ``obj``; raise any exception when it cannot be encoded."""

    @abc.abstractmethod
    def deserialize(self, data: bytes) -> Any:
        """Decode ``data``; raise any exception when it is malformed."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class StdlibJsonSerializer(Serializer):
    """The kernel's fallback ``json``: stdlib only, used when no plugin provides ``json``."""

    @property
    def name(self) -> str:
        return "json"

    def serialize(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def deserialize(self, data: bytes) -> Any:
        return json.loads(data, parse_constant=_refuse_constant)


class SerializerRegistry:
    """Serializers by name, one registry per node (``node._serializer_registry``)."""

    def __init__(self, serializers: dict[str, Serializer] | None = None) -> None:
        self._by_name: dict[str, Serializer] = dict(serializers or {})

    def register(self, serializer: Serializer, *, replace: bool = True) -> None:
        """Add ``serializer`` under ``serializer.name`` (replacing one of the same name by default)."""
        if not isinstance(serializer, Serializer):
            raise TypeError(f"expected a node_comm.Serializer, got {type(serializer).__name__}")
        name = serializer.name
        if not replace and name in self._by_name:
            raise ConfigError(f"serializer {name!r} is already registered")
        self._by_name[name] = serializer

    def get(self, name: str) -> Serializer:
        """The serializer called ``name``; a :class:`ConfigError` listing what exists otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(
                f"serializer {name!r} is not installed; available: {', '.join(sorted(self._by_name))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name
