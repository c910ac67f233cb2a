"""Nodes in their own process for the NATS fault and fan-out tests.

``python peer.py SERVERS PREFIX ID[,ID...] [--connect HUB] [--fail ID[,ID...]]`` starts one nats node
per id (SERVERS is a comma-separated URL list), each serving ``echo``, ``hang`` (never returns)
``work`` (returns its node id, or raises for the ids in ``--fail``) and ``size`` (raw bytes in,
their length out); with ``--connect`` each
node connects to node HUB. Prints ``READY`` and runs until killed; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from node_comm import MethodOptions, Node, NodeConfig, TransportConfig
from node_comm_nats import NatsTransportConfig


async def main() -> None:
    servers, prefix, ids = sys.argv[1].split(","), sys.argv[2], sys.argv[3].split(",")
    hub = sys.argv[sys.argv.index("--connect") + 1] if "--connect" in sys.argv else None
    failing = set(sys.argv[sys.argv.index("--fail") + 1].split(",")) if "--fail" in sys.argv else set()

    async def echo(payload: object, ctx: object) -> object:
        return payload

    async def hang(payload: object, ctx: object) -> None:
        await asyncio.Event().wait()

    async def work(payload: object, ctx: object) -> str:
        me = ctx.node.node_id  # type: ignore[attr-defined]
        if me in failing:
            raise RuntimeError(f"{me} fails on purpose")
        return str(me)

    async def size(payload: bytes, ctx: object) -> bytes:
        return str(len(payload)).encode()

    nodes = []
    for node_id in ids:
        nats = NatsTransportConfig(servers=servers, subject_prefix=prefix)
        node = Node(
            node_id, NodeConfig(node_id=node_id, transport=TransportConfig(mode="nats", options={"nats": nats}))
        )
        node.register("echo", echo)
        node.register("hang", hang)
        node.register("work", work)
        node.register("size", size, MethodOptions(serializer="raw"))
        nodes.append(node)
    await asyncio.gather(*(n.start() for n in nodes))
    if hub is not None:
        await asyncio.gather(*(n.connect(hub) for n in nodes))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await asyncio.gather(*(n.stop() for n in nodes))


if __name__ == "__main__":
    asyncio.run(main())
