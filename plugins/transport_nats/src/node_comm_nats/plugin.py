"""Entry point of the nats transport plugin. Importing it does not import nats-py: the transport
module is imported only when a node is built with ``transport.mode: nats``."""

from __future__ import annotations

from node_comm import hookimpl
from node_comm.registry import LazyTransport, TransportRegister


@hookimpl
def node_comm_register_transports(register: TransportRegister) -> None:
    register(
        "nats", LazyTransport("node_comm_nats.transport:NatsTransport", "node_comm_nats.config:NatsTransportConfig")
    )
