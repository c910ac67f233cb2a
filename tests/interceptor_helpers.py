"""What the interceptor tests share: memory-node configs with interceptors by name, and a serializer
that counts what it decodes (a refused call's payload must never be decoded)."""

from __future__ import annotations

import json
from typing import Any

from node_comm import InterceptorConfig, NodeConfig, Serializer, TransportConfig


def mem(node_id: str, *interceptors: InterceptorConfig, **kw: Any) -> NodeConfig:
    """A memory-transport config for ``node_id`` with ``interceptors``; ``kw`` are NodeConfig fields."""
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="memory"), interceptors=list(interceptors), **kw)


class CountingJson(Serializer):
    """json, as ``counting``, that counts what it decodes: proves a refused payload was never decoded."""

    def __init__(self) -> None:
        self.decoded = 0

    @property
    def name(self) -> str:
        return "counting"

    def serialize(self, obj: Any) -> bytes:
        return json.dumps(obj).encode()

    def deserialize(self, data: bytes) -> Any:
        self.decoded += 1
        return json.loads(data)
