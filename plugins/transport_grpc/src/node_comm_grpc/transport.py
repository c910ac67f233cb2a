"""Placeholder until the gRPC transport lands."""

from __future__ import annotations

from typing import Any, ClassVar

from node_comm import Message, Transport

from .config import GrpcTransportConfig


class GrpcTransport(Transport):
    options_class: ClassVar[type[Any] | None] = GrpcTransportConfig

    async def stop(self, reason: str = "node stopped") -> None:
        pass

    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        raise NotImplementedError("grpc transport is not implemented yet")

    async def send(self, message: Message) -> None:
        raise NotImplementedError

    async def disconnect(self, node_id: str, reason: str) -> None:
        pass
