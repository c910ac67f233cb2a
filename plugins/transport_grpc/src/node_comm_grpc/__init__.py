"""The ``grpc`` transport for node-comm. Importing this package does not import grpc."""

from .config import GrpcTransportConfig, ReconnectConfig, TlsConfig

__all__ = ["GrpcTransportConfig", "ReconnectConfig", "TlsConfig"]
