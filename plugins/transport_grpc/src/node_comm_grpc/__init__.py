"""The ``grpc`` transport for node-comm."""

from .config import GrpcTransportConfig

__all__ = ["GrpcTransportConfig"]
