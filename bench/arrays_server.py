"""Server process of the ``arrays`` workload: a raw grpc.aio echo server and a node-comm grpc node
(authenticated by a shared secret, as pickle needs) echoing in ``pickle``, the old in-band pickle,
``numpy`` and ``raw``. Prints their addresses as one JSON line."""

from __future__ import annotations

import asyncio
import pickle
import sys
from typing import Any

from .common import serve_until_stdin_closes, trim
from .rawgrpc import start_server
from .rawtcp import start_tcp_server

TOKEN = "bench-arrays-secret"
SERVER_ID = "bench-arrays-srv"
#: serializer name -> method name
METHODS = {"pickle": "echo_pickle", "pickle-inband": "echo_inband", "numpy": "echo_numpy", "raw": "echo_raw"}


def inband_pickle() -> Any:
    """The ``pickle`` serializer as it was before out-of-band buffers (protocol 5, arrays in-band)."""
    from node_comm import Serializer

    class InBandPickle(Serializer):
        @property
        def name(self) -> str:
            return "pickle-inband"

        def serialize(self, obj: Any) -> bytes:
            return pickle.dumps(obj, protocol=5)

        def deserialize(self, data: bytes) -> Any:
            return pickle.loads(data)

    return InBandPickle()


def node_config(node_id: str, port: int | None) -> Any:
    from node_comm import GrpcTransportConfig, NodeConfig, TransportConfig

    grpc = GrpcTransportConfig(host="127.0.0.1", port=port, token=TOKEN)
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="grpc", grpc=grpc))


async def echo(payload: Any, ctx: Any) -> Any:
    return payload


async def main() -> None:
    from node_comm import MethodOptions, Node

    raw, raw_addr = await start_server()
    tcp, tcp_addr = await start_tcp_server()
    node = Node(SERVER_ID, node_config(SERVER_ID, 0))
    node.serializers.register(inband_pickle())
    for ser, method in METHODS.items():
        node.register(method, echo, MethodOptions(serializer=ser))
    node.register("bench_trim", trim)
    await node.start()
    await serve_until_stdin_closes({"raw": raw_addr, "tcp": tcp_addr, "node": node.address})
    tcp.close()
    await node.stop(grace=0)
    await raw.stop(None)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
