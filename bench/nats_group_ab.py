"""Paired A/B of small NATS broadcasts: published once per broadcast group vs once per target (the
previous path), to N of 1000 participants (4 processes x 250 nodes), with N=1 as the baseline,
and the coordinator's CPU time per broadcast.
``python -m bench.nats_group_ab [rounds] [seconds]``; median of the rounds, min-max."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from node_comm import Transport

from .common import ServerProcess, interleave, small_payload
from .nats_bench import COORD, _round
from .nats_support import LocalNats, nats_node_config


async def main(rounds: int, seconds: float) -> None:
    from node_comm import Node

    server = LocalNats()
    node = Node(COORD, nats_node_config(COORD, server.url))
    await node.start()
    procs = [ServerProcess("bench.nats_fanout_participant", COORD, server.url, f"fan{p}", "250") for p in range(4)]
    try:
        await asyncio.gather(*(p.ready(timeout=600) for p in procs))
        peers = sorted(node.connected_nodes)
        by_proc: dict[str, list[str]] = {}
        for pid in peers:
            by_proc.setdefault(pid.split("-")[0], []).append(pid)
        order = [pid for i in range(250) for lst in by_proc.values() if i < len(lst) for pid in [lst[i]]]
        tr: Any = node.transport
        grouped = tr._send_grouped

        def mode(on: bool) -> None:
            tr._send_grouped = grouped if on else (lambda msgs: Transport.send_many(tr, msgs))

        def run(n: int, on: bool) -> Any:
            async def go() -> Any:
                mode(on)
                cpu = time.process_time()
                sample = await _round(node, "ping", small_payload(n), frozenset(order[n:]), n, seconds)
                sample.extra["cpu_ms"] = (time.process_time() - cpu) / len(sample.latencies) * 1e3
                return sample

            return go

        systems = {"N=1": run(1, True)}
        for n in (10, 100, 1000):
            systems[f"N={n} grouped"] = run(n, True)
            systems[f"N={n} per-target"] = run(n, False)
        t0 = time.perf_counter()
        out = await interleave(systems, rounds)
        print(f"{len(peers)} participants; {rounds} rounds in {time.perf_counter() - t0:.0f}s")
        for name, samples in out.items():
            vals = [s.rate for s in samples]
            ratios = [s.rate / b.rate for s, b in zip(samples, out["N=1"], strict=True)]
            print(
                f"{name:18} {statistics.median(vals):8.2f} ms  vs N=1: {statistics.median(ratios):6.1f}x "
                f"({min(ratios):.1f}-{max(ratios):.1f})   coordinator CPU "
                f"{statistics.median(s.extra['cpu_ms'] for s in samples):.2f} ms per broadcast"
            )
    finally:
        for p in procs:
            p.close()
        await node.stop(grace=0)
        server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
