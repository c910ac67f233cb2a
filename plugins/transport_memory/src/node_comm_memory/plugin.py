"""Entry point of the ``memory`` transport plugin."""

from __future__ import annotations

from node_comm import hookimpl
from node_comm.registry import TransportRegister

from .transport import MemoryTransport


@hookimpl
def node_comm_register_transports(register: TransportRegister) -> None:
    register("memory", MemoryTransport)
