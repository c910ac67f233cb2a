"""Hook specifications. Each hook receives a ``register`` callable and fills a registry with it.

Plugins implement them with :data:`node_comm.hookimpl` and are found through the entry-point
group ``node_comm``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "node_comm"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def node_comm_register_transports(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register transports: ``register(name, factory)``. ``transport.mode: NAME`` picks one;
    ``factory(options)`` returns a :class:`node_comm.transport.Transport`."""


@hookspec
def node_comm_register_serializers(register: Callable[[Any], None]) -> None:
    """Register serializers: ``register(serializer)``, named by ``serializer.name``."""


@hookspec
def node_comm_register_interceptors(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register interceptors: ``register(name, factory)``; YAML
    ``interceptors: [{name: NAME, options: {...}}]`` builds ``factory(**options)``."""
