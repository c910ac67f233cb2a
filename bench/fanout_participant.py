"""Participant process of the fan-out workload: ``count`` dial-only grpc nodes, each connected to
the coordinator and serving ``ping`` (echo). Prints one JSON line once every node is connected."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .common import serve_until_stdin_closes
from .server import echo, grpc_node_config


async def sink(payload: Any, ctx: Any) -> bytes:
    """Takes a large broadcast payload, answers with nothing (the coordinator's side is measured)."""
    return b""


async def main(coordinator: str, address: str, prefix: str, count: int) -> None:
    from node_comm import MethodOptions, Node

    nodes: list[Any] = []
    for k in range(count):
        node = Node(f"{prefix}-{k}", grpc_node_config(f"{prefix}-{k}", None))
        node.register("ping", echo)
        node.register("sink", sink, MethodOptions(serializer="raw"))
        nodes.append(node)
    sem = asyncio.Semaphore(32)

    async def up(node: Any) -> None:
        async with sem:
            await node.start()
            await node.connect(coordinator, address, timeout=60)

    await asyncio.gather(*(up(n) for n in nodes))
    await serve_until_stdin_closes({"ready": count})
    await asyncio.gather(*(n.stop(grace=0) for n in nodes), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
