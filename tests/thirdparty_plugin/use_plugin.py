"""Run in a subprocess by tests/test_thirdparty_plugin.py, with the installed plugin on PYTHONPATH:
two nodes built from one YAML (argv[1]) that names the plugin's transport, interceptor and (for the
method) serializer. Prints what happened as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from node_comm import CallContext, MethodOptions, Node, load_config


async def main(config_path: str) -> dict[str, Any]:
    os.environ["NODE_ID"] = "server"
    server = Node(config=load_config(config_path))
    os.environ["NODE_ID"] = "client"
    client = Node(config=load_config(config_path))

    async def echo(payload: Any, ctx: CallContext) -> dict[str, Any]:
        return {"echo": payload["text"], "stamp": ctx.metadata.get("x-stamp")}

    server.register("echo", echo, MethodOptions(serializer="rot13json"))
    async with server, client:
        await client.connect("server")
        result = await client.call("server", "echo", {"text": "hello"}, serializer="rot13json")

    from node_comm_thirdparty import STATS

    return {
        "result": result,
        "stats": STATS,
        "transport_class": f"{type(client.transport).__module__}.{type(client.transport).__name__}",
        "interceptors": [type(i).__name__ for i in client.interceptors],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
