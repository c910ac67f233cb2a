"""Options of the ``grpc`` transport (YAML ``transport.grpc``). Importing this never imports grpc."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GrpcTransportConfig:
    """Where this node listens: ``host`` (default loopback; ``0.0.0.0`` binds every interface) and
    ``port`` (``None`` for a dial-only node, ``0`` for any free port)."""

    host: str = "127.0.0.1"
    port: int | None = 50051
