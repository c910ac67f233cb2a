"""Server process of the gRPC workloads: a raw grpc.aio echo server and a node-comm grpc node
(``echo`` in json, ``echo_bin`` in raw bytes). Prints their addresses as one JSON line."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .common import serve_until_stdin_closes, trim
from .rawgrpc import start_server
from .rawtcp import start_tcp_server


async def echo(payload: Any, ctx: Any) -> Any:
    return payload


def grpc_node_config(node_id: str, port: int | None) -> Any:
    from node_comm import GrpcTransportConfig, NodeConfig, TransportConfig

    return NodeConfig(
        node_id=node_id,
        transport=TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=port)),
    )


async def start_node_server(node_id: str) -> tuple[Any, str | None, str | None]:
    """A node-comm grpc node serving ``echo`` / ``echo_bin``; (node, address, why-not)."""
    from node_comm import MethodOptions, Node

    try:
        node = Node(node_id, grpc_node_config(node_id, 0))
        node.register("echo", echo)
        node.register("echo_bin", echo, MethodOptions(serializer="raw"))
        node.register("bench_trim", trim)
        await node.start()
    except NotImplementedError as exc:
        return None, None, f"grpc transport not available ({exc})"
    addr = node.address
    if not addr:
        await node.stop()
        return None, None, "grpc transport not available (placeholder, no address)"
    return node, addr, None


async def main() -> None:
    raw, raw_addr = await start_server()
    tcp, tcp_addr = await start_tcp_server()
    node, addr, why = await start_node_server("bench-srv")
    await serve_until_stdin_closes({"raw": raw_addr, "tcp": tcp_addr, "node": addr, "node_error": why})
    tcp.close()
    if node is not None:
        await node.stop(grace=0)
    await raw.stop(None)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
