"""The hook implementations (entry point ``thirdparty`` in group ``node_comm``) and what they register.

``STATS`` counts what each part did, so a test can prove every part was really used.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from node_comm import (
    CallContext,
    ConnectFailedError,
    Interceptor,
    Message,
    NodeNotConnectedError,
    Serializer,
    Transport,
    TransportHost,
    hookimpl,
)
from node_comm.interceptor import NextHandler

STATS: dict[str, Any] = {
    "sent": 0,
    "sent_serializers": [],
    "sent_payloads": [],
    "tags": [],
    "serialized": 0,
    "deserialized": 0,
    "stamped": 0,
}

_nodes: dict[str, LoopbackTransport] = {}


@dataclass
class LoopbackOptions:
    """YAML ``transport.loopback``."""

    tag: str = "lo"


class LoopbackTransport(Transport):
    """Nodes of one process, found by id; every message is copied, as a network would."""

    options_class: ClassVar[type[Any] | None] = LoopbackOptions

    def __init__(self, options: LoopbackOptions | None = None) -> None:
        super().__init__(options or LoopbackOptions())
        self._links: dict[str, LoopbackTransport] = {}
        self._id = ""

    @property
    def address(self) -> str | None:
        return f"loopback://{self._id}" if self._id else None

    async def start(self, host: TransportHost) -> None:
        await super().start(host)
        self._id = host.node_id
        _nodes[self._id] = self
        STATS["tags"].append(self.options.tag)

    async def stop(self, reason: str = "node stopped") -> None:
        _nodes.pop(self._id, None)
        for peer in list(self._links):
            await self.disconnect(peer, reason)

    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        other = _nodes.get(node_id)
        if other is None:
            raise ConnectFailedError(node_id, f"no loopback node {node_id!r}", address)
        self._links[node_id], other._links[self._id] = other, self
        self.host.peer_connected(node_id, other.address)
        other.host.peer_connected(self._id, self.address)

    async def send(self, message: Message) -> None:
        other = self._links.get(message.target)
        if other is None:
            raise NodeNotConnectedError(message.target)
        STATS["sent"] += 1
        STATS["sent_serializers"].append(message.serializer)
        STATS["sent_payloads"].append(message.payload.decode("latin-1"))
        msg = message.copy()
        asyncio.get_running_loop().call_soon(other.host.deliver, msg)

    async def disconnect(self, node_id: str, reason: str) -> None:
        other = self._links.pop(node_id, None)
        if other is None:
            return
        if other._links.pop(self._id, None) is not None:
            other.host.peer_disconnected(self._id, reason)
        self.host.peer_disconnected(node_id, reason)


class Rot13JsonSerializer(Serializer):
    """JSON, then ROT13: on the wire ``{"text": "hello"}`` reads ``{"grkg": "uryyb"}``."""

    @property
    def name(self) -> str:
        return "rot13json"

    def serialize(self, obj: Any) -> bytes:
        STATS["serialized"] += 1
        return codecs.encode(json.dumps(obj), "rot13").encode()

    def deserialize(self, data: bytes) -> Any:
        STATS["deserialized"] += 1
        return json.loads(codecs.decode(data.decode(), "rot13"))


class StampInterceptor(Interceptor):
    """Adds ``metadata[key] = "VALUE:SENDER"`` to every outbound call."""

    name = "stamp"

    def __init__(self, value: str = "stamped", key: str = "x-stamp") -> None:
        if not value:
            raise ValueError("value: must be a non-empty string")
        self.value, self.key = value, key

    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        STATS["stamped"] += 1
        message.metadata[self.key] = f"{self.value}:{context.node.node_id}"
        return await next_handler(message)


@hookimpl
def node_comm_register_transports(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("loopback", LoopbackTransport)


@hookimpl
def node_comm_register_serializers(register: Callable[[Serializer], None]) -> None:
    register(Rot13JsonSerializer())


@hookimpl
def node_comm_register_interceptors(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("stamp", StampInterceptor)
