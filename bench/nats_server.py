"""Server process of the NATS workload: a node-comm nats node ``bench-srv`` serving ``echo``, and a
raw nats-py responder on ``raw.echo`` (stdlib json decode + encode, as the node does with its
serializer). ``python -m bench.nats_server URL``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from .common import serve_until_stdin_closes
from .nats_support import nats_node_config
from .server import echo


async def main(url: str) -> None:
    import nats

    from node_comm import Node

    nc = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await msg.respond(json.dumps(json.loads(msg.data)).encode())

    await nc.subscribe("raw.echo", cb=respond)
    await nc.flush()
    node = Node("bench-srv", nats_node_config("bench-srv", url))
    node.register("echo", echo)
    await node.start()
    await serve_until_stdin_closes({"ok": True})
    await node.stop(grace=0)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
