"""Hook specifications. Each hook receives a typed ``register`` callable (see
:mod:`node_comm.registry`) and fills a registry with it; the kernel calls them through ``pm.hook``.

Plugins implement them with :data:`node_comm.hookimpl` and are found through the entry-point
group ``node_comm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import InterceptorRegister, SerializerRegister, TransportRegister

PROJECT = "node_comm"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def node_comm_register_transports(register: TransportRegister) -> None:
    """Register transports: ``register(name, factory, options_class=None)``. ``transport.mode: NAME``
    picks one; ``factory(options)`` returns a :class:`node_comm.transport.Transport`;
    ``options_class`` (default ``factory.options_class``) types the YAML section ``transport.NAME``.
    A factory may import its transport when called, so discovery stays cheap."""


@hookspec
def node_comm_register_serializers(register: SerializerRegister) -> None:
    """Register serializers: ``register(serializer)``, named by ``serializer.name``."""


@hookspec
def node_comm_register_interceptors(register: InterceptorRegister) -> None:
    """Register interceptors: ``register(name, factory)``; YAML
    ``interceptors: [{name: NAME, options: {...}}]`` builds ``factory(**options)``."""
