"""``python -m bench [--quick] [--only memory,grpc,large,arrays,fanout,peers,signing,nats]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from .common import Settings, log
from .report import Results

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
WORKLOADS = ("memory", "grpc", "large", "arrays", "fanout", "peers", "signing", "nats")


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="about one minute smoke run (short rounds)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads to run")
    ap.add_argument("--out", default=RESULTS, help="where latest.json and chart.png go")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--chart-only", action="store_true", help="redraw chart.png from latest.json")
    args = ap.parse_args(argv)
    if args.chart_only:
        from .report import draw_chart

        draw_chart(Results.from_json(os.path.join(args.out, "latest.json")), os.path.join(args.out, "chart.png"))
        return 0
    settings = Settings.make(args.quick)
    res = Results(args.quick)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    for w in wanted:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    t0 = time.perf_counter()
    from . import arrays, fanout, grpc_bench, large, memory, nats_bench, peers, signing

    mods = {
        "memory": memory,
        "grpc": grpc_bench,
        "large": large,
        "arrays": arrays,
        "fanout": fanout,
        "peers": peers,
        "signing": signing,
        "nats": nats_bench,
    }
    for w in WORKLOADS:
        if w in wanted:
            t = time.perf_counter()
            await mods[w].run(settings, res)
            log(f"  {w} took {time.perf_counter() - t:.1f}s")
    log(f"total {time.perf_counter() - t0:.1f}s")
    print()
    print(res.table())
    if not args.no_write:
        path, chart = res.write(args.out)
        print(f"\nresults: {path}" + (f"\nchart:   {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
