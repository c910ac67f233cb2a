"""Entry point of the grpc transport plugin. Importing it does not import grpc: the transport
module (and grpc with it) is imported only when a node is built with ``transport.mode: grpc``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_comm import hookimpl
from node_comm.registry import TransportRegister

if TYPE_CHECKING:
    from .config import GrpcTransportConfig
    from .transport import GrpcTransport


class _LazyGrpcTransport:
    """The ``grpc`` transport factory: declares its options type without importing grpc (nor
    anything of this plugin, so a memory-only node imports nothing named grpc)."""

    @property
    def options_class(self) -> type[GrpcTransportConfig]:
        from .config import GrpcTransportConfig

        return GrpcTransportConfig

    def __call__(self, options: GrpcTransportConfig | None = None) -> GrpcTransport:
        from .transport import GrpcTransport

        return GrpcTransport(options)

    def __repr__(self) -> str:
        return "node_comm_grpc.transport.GrpcTransport"


@hookimpl
def node_comm_register_transports(register: TransportRegister) -> None:
    register("grpc", _LazyGrpcTransport())
