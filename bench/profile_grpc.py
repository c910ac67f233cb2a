"""Drive one gRPC workload for profiling: ``python -m bench.profile_grpc [seq|conc|large] [seconds]``.
Run it under a sampler that follows the server process too, e.g.
``py-spy record --subprocesses --format raw -o grpc.txt -- python -m bench.profile_grpc seq 5``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .common import ServerProcess, conc_loop, seq_loop, small_payload
from .grpc_bench import SERVER_ID, client_node


async def main(mode: str, seconds: float) -> None:
    srv = ServerProcess("bench.server")
    try:
        info = await srv.ready()
        node, why = await client_node("prof-cli", info["node"], info["node_error"])
        if node is None:
            print(why)
            return

        async def n(i: int) -> Any:
            return await node.call(SERVER_ID, "echo", small_payload(i))

        data = b"\xa5" * (64 << 20)

        async def big(i: int) -> Any:
            return await node.call(SERVER_ID, "echo_bin", data, serializer="raw", timeout=600)

        if mode == "seq":
            s = await seq_loop(n, seconds)
        elif mode == "conc":
            s = await conc_loop(n, seconds, 64)
        else:
            s = await seq_loop(big, seconds)
        print(f"{mode}: {s.rate:.1f} calls/s")
        await node.stop(grace=0)
    finally:
        srv.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "seq", float(sys.argv[2]) if len(sys.argv) > 2 else 5))
