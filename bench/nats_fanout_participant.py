"""Participant process of the NATS fan-out workload: ``count`` nats nodes connected to the
coordinator, serving ``ping`` (echo) and ``size`` (raw bytes in, their length out).
``python -m bench.nats_fanout_participant COORD URL PREFIX COUNT``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .common import serve_until_stdin_closes
from .nats_support import nats_node_config
from .server import echo


async def size(payload: bytes, ctx: Any) -> bytes:
    return str(len(payload)).encode()


async def main(coordinator: str, url: str, prefix: str, count: int) -> None:
    from node_comm import MethodOptions, Node

    nodes = []
    for k in range(count):
        node = Node(f"{prefix}-{k}", nats_node_config(f"{prefix}-{k}", url))
        node.register("ping", echo)
        node.register("size", size, MethodOptions(serializer="raw"))
        nodes.append(node)
    sem = asyncio.Semaphore(32)

    async def up(node: Any) -> None:
        async with sem:
            await node.start()
            await node.connect(coordinator, timeout=60)

    await asyncio.gather(*(up(n) for n in nodes))
    await serve_until_stdin_closes({"ready": count})
    await asyncio.gather(*(n.stop(grace=0) for n in nodes), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
