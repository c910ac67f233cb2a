"""Entry point of the ``memory`` transport plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node_comm import hookimpl

from .transport import MemoryTransport


@hookimpl
def node_comm_register_transports(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("memory", MemoryTransport)
