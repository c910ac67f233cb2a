"""The ``grpc`` transport for node-comm. Importing this package does not import grpc, nor its
options module until one of its names is used (a memory-only node loads only ``.plugin``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import GrpcTransportConfig, ReconnectConfig, TlsConfig

__all__ = ["GrpcTransportConfig", "ReconnectConfig", "TlsConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
