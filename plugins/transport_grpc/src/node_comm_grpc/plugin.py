"""Entry point of the grpc transport plugin. Importing it does not import grpc: the transport
module (and grpc with it) is imported only when a node is built with ``transport.mode: grpc``."""

from __future__ import annotations

from node_comm import hookimpl
from node_comm.registry import LazyTransport, TransportRegister


@hookimpl
def node_comm_register_transports(register: TransportRegister) -> None:
    register(
        "grpc", LazyTransport("node_comm_grpc.transport:GrpcTransport", "node_comm_grpc.config:GrpcTransportConfig")
    )
