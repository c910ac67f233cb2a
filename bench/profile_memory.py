"""Profile the kernel hot path on the memory transport: ``python -m bench.profile_memory [seq|conc]``
(cProfile, top functions by own time). For a sampling view: ``py-spy record -o prof.svg -- python -m
bench.profile_memory conc``."""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys

from node_comm import Node, NodeConfig

from .common import conc_loop, seq_loop, small_payload
from .memory import echo


async def main(mode: str, seconds: float, profile: bool) -> None:
    a = Node("prof-a", NodeConfig(node_id="prof-a", default_timeout=None if "--nodl" in sys.argv else 30.0))
    b = Node("prof-b", NodeConfig(node_id="prof-b"))
    b.register("echo", echo)
    await a.start()
    await b.start()
    await a.connect("prof-b")

    async def call(i: int) -> object:
        return await a.call("prof-b", "echo", small_payload(i))

    run = (lambda: seq_loop(call, seconds)) if mode == "seq" else (lambda: conc_loop(call, seconds, 64))
    await run()  # warm up
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    sample = await run()
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    print(f"{mode}: {sample.rate:.0f} calls/s")
    await a.stop()
    await b.stop()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "seq"
    asyncio.run(main(mode, float(sys.argv[2]) if len(sys.argv) > 2 else 2.0, "--no-profile" not in sys.argv))
