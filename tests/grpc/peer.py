"""A node in its own process for the gRPC fault tests.

``python peer.py NODE_ID PORT [--heartbeat INTERVAL TIMEOUT] [--token SECRET] [--connect ID ADDRESS]``
starts a grpc node on 127.0.0.1:PORT (0 = any free port; ``none`` = dial-only), optionally dials
node ID at ADDRESS, serves ``echo``, ``sleep`` (sleeps ``payload`` seconds), ``hang`` (never
returns), ``echo_pickle`` and ``echo_slow`` (``echo`` with the pickle and ``slowpickle``
serializers) and ``stats`` (its own open tables, for the soak run), prints ``READY host:port`` and
runs until killed; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import pickle
import signal
import sys
import time
from typing import Any

from node_comm import (
    GrpcTransportConfig,
    HeartbeatConfig,
    MethodOptions,
    Node,
    NodeConfig,
    Serializer,
    TransportConfig,
)

SLOW_DECODE = 2.5  # seconds: longer than the 2 s heartbeat timeout of the large-payload tests


class SlowPickleSerializer(Serializer):
    """``slowpickle``: pickle whose decoding of a payload of 1 MiB or more first takes
    ``SLOW_DECODE`` seconds without holding the GIL, as a compressing serializer (zlib) does."""

    @property
    def name(self) -> str:
        return "slowpickle"

    def serialize(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def deserialize(self, data: bytes) -> Any:
        if len(data) >= 1024 * 1024:
            time.sleep(SLOW_DECODE)
        return pickle.loads(data)


async def main() -> None:
    node_id, port = sys.argv[1], (None if sys.argv[2] == "none" else int(sys.argv[2]))
    hb = HeartbeatConfig()
    if "--heartbeat" in sys.argv:
        i = sys.argv.index("--heartbeat")
        hb = HeartbeatConfig(enabled=True, interval=float(sys.argv[i + 1]), timeout=float(sys.argv[i + 2]))
    token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
    config = NodeConfig(
        node_id=node_id,
        transport=TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=port, token=token)),
        heartbeat=hb,
        shutdown_grace=2.0,
    )
    node = Node(node_id, config)

    async def echo(payload: object, ctx: object) -> object:
        return payload

    async def sleep(payload: float, ctx: object) -> str:
        await asyncio.sleep(payload)
        return "slept"

    async def hang(payload: object, ctx: object) -> None:
        await asyncio.Event().wait()

    async def stats(payload: object, ctx: object) -> dict[str, int]:
        peers = node._peers.values()
        return {
            "pending": len(node._pending),
            "inbound": sum(len(p.inbound) for p in peers) - 1,
            "tasks": len(asyncio.all_tasks()),
        }

    node.register("stats", stats)
    node.register("echo", echo)
    node.register("sleep", sleep)
    node.register("hang", hang)
    node.register("echo_pickle", echo, MethodOptions(serializer="pickle"))
    node.serializers.register(SlowPickleSerializer())
    node.register("echo_slow", echo, MethodOptions(serializer="slowpickle"))
    await node.start()
    if "--connect" in sys.argv:
        i = sys.argv.index("--connect")
        await node.connect(sys.argv[i + 1], sys.argv[i + 2])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {node.address}", flush=True)
    await stop.wait()
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main())
