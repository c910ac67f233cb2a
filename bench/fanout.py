"""Fan-out: one coordinator (listening) broadcasts to N dial-only participants that live in several
participant processes; time per broadcast for each N, and how it grows with N."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import (
    Sample,
    ServerProcess,
    Settings,
    current_rss,
    interleave,
    log,
    peak_rss,
    reset_peak_rss,
    small_payload,
    trim_memory,
)
from .rawfanout import Coordinator
from .report import Results
from .server import start_node_server

COORD = "bench-coord"
BIG = 16 << 20  # the large broadcast: 16 MiB of raw bytes


async def _round(node: Any, targets: list[str], n: int, seconds: float) -> Sample:
    """Broadcasts back to back for ``seconds`` (at least 3): mean ms per broadcast."""
    count = 0
    start = time.perf_counter()
    lat = []
    while True:
        t0 = time.perf_counter()
        out = await node.broadcast("ping", small_payload(count), targets=targets)
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        count += 1
        if len(out) != n:
            raise RuntimeError(f"broadcast reached {len(out)} nodes, expected {n}")
        bad = [v for v in out.values() if isinstance(v, BaseException)]
        if bad:
            raise RuntimeError(f"{len(bad)} of {n} participants failed, e.g. {bad[0]!r}")
        if count >= 3 and t1 - start >= seconds:
            break
    return Sample((time.perf_counter() - start) / count * 1e3, lat)


async def _raw_round(coord: Coordinator, targets: list[str], seconds: float) -> Sample:
    """The same loop over the raw grpc.aio coordinator."""
    count = 0
    start = time.perf_counter()
    lat = []
    while True:
        t0 = time.perf_counter()
        out = await coord.broadcast(targets, small_payload(count))
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        count += 1
        if len(out) != len(targets):
            raise RuntimeError(f"raw broadcast reached {len(out)} streams, expected {len(targets)}")
        if count >= 3 and t1 - start >= seconds:
            break
    return Sample((time.perf_counter() - start) / count * 1e3, lat)


def _spread(names: list[str], per: int) -> list[str]:
    """``names`` ordered round-robin by process (the prefix before ``-``), so every N crosses processes."""
    by_proc: dict[str, list[str]] = {}
    for name in sorted(names):
        by_proc.setdefault(name.split("-")[0], []).append(name)
    return [lst[i] for i in range(per) for lst in by_proc.values() if i < len(lst)]


def _start_participants(module: str, address: str, total: int, procs: int, *lead: str) -> list[ServerProcess]:
    per = -(-total // procs)
    out, left = [], total
    for p in range(procs):
        cnt = min(per, left)
        left -= cnt
        if cnt > 0:
            out.append(ServerProcess(module, *lead, address, f"fan{p}", str(cnt)))
    return out


async def _big_round(node: Any, targets: list[str], n: int, data: bytes) -> Sample:
    """One broadcast of ``data`` (raw): ms, and the coordinator's peak RSS above its idle mark."""
    trim_memory()
    reset_peak_rss()
    idle = current_rss()
    t0 = time.perf_counter()
    out = await node.broadcast("sink", data, serializer="raw", targets=targets, timeout=600)
    ms = (time.perf_counter() - t0) * 1e3
    bad = [v for v in out.values() if isinstance(v, BaseException)]
    if len(out) != n or bad:
        raise RuntimeError(f"16 MiB broadcast: {len(bad)} of {len(out)} failed, e.g. {bad[:1]!r}")
    return Sample(ms, extra={"above_idle": peak_rss() - idle})


async def _big(node: Any, order: list[str], settings: Settings, res: Results) -> None:
    """A 16 MiB broadcast to 1/10/100 participants: coordinator time, and its peak RSS above idle
    as a multiple of the payload (issue 9: the encoded payload held once, not once per target)."""
    log("  16 MiB broadcast to 1/10/100 ...")
    data = b"\x5a" * BIG  # the user's payload: built before the idle mark
    sizes = [n for n in (1, 10, 100) if n <= len(order)]
    systems = {f"N={n}": (lambda n=n: _big_round(node, order[:n], n, data)) for n in sizes}
    out = await interleave(systems, 3, warmup=True)
    for n in sizes:
        fig = res.figure(f"fanout.16MiB.{n}", f"16 MiB broadcast to {n}", out[f"N={n}"], "ms", n=n)
        res.check(
            f"fan-out 16MiB to {n}: coordinator peak RSS above idle / P",
            f"{fig['median']:.0f} ms per broadcast; RSS above idle {fig['above_idle'] / BIG:.2f}x P",
            fig["above_idle"] / BIG,
            1.5,
            higher_is_better=False,
        )


async def run(settings: Settings, res: Results) -> None:
    log("fan-out over gRPC ...")
    node, address, why = await start_node_server(COORD)
    if node is None:
        res.skip("fan-out broadcast 1000 vs 1", why or "grpc transport not available")
        return
    total = max(settings.fanout_sizes)
    per = -(-total // settings.fanout_procs)
    procs: list[ServerProcess] = []
    raw = Coordinator()
    raw.expected = total
    try:
        procs = _start_participants("bench.fanout_participant", address, total, settings.fanout_procs, COORD)
        raw_address = await raw.start()
        procs += _start_participants("bench.rawfanout", raw_address, total, settings.fanout_procs)
        t0 = time.perf_counter()
        await asyncio.gather(*(p.ready(timeout=300) for p in procs))
        for _ in range(600):
            if len(node.connected_nodes) >= total:
                break
            await asyncio.sleep(0.1)
        await asyncio.wait_for(raw.joined.wait(), 60)
        log(f"  {len(node.connected_nodes)} participants connected in {time.perf_counter() - t0:.1f}s")
        peers = sorted(node.connected_nodes)
        if len(peers) < total:
            res.skip("fan-out", f"only {len(peers)} of {total} participants connected")
            return
        order = _spread(peers, per)
        raw_order = _spread(list(raw.streams), per)
        secs = settings.seconds
        systems = {}
        for n in settings.fanout_sizes:
            systems[f"N={n}"] = lambda t=order[:n], n=n: _round(node, t, n, secs)
            systems[f"raw N={n}"] = lambda t=raw_order[:n]: _raw_round(raw, t, secs)
        out = await interleave(systems, settings.rounds)
        figs, raws = {}, {}
        for n in settings.fanout_sizes:
            figs[n] = res.figure(f"fanout.{n}", f"broadcast to {n}", out[f"N={n}"], "ms", n=n)
            raws[n] = res.figure(f"fanout.raw.{n}", f"raw grpc.aio to {n}", out[f"raw N={n}"], "ms", n=n)
        for n in settings.fanout_sizes:
            res.ratio(
                f"fan-out: broadcast to {n} vs raw grpc.aio streams (time)",
                figs[n],
                raws[n],
                1.3 if n == max(settings.fanout_sizes) else None,
                higher_is_better=False,
            )
        one = figs[1]
        for n in settings.fanout_sizes[1:]:
            res.ratio(
                f"fan-out: broadcast to {n} vs to 1 (time)",
                figs[n],
                one,
                20.0 if n == 1000 else None,
                higher_is_better=False,
            )
        await _big(node, order, settings, res)
    finally:
        # The node first: closing the participant processes waits for them to exit, which would
        # block its loop and set off its watchdog's warning for what is the harness's own wait.
        await node.stop(grace=0)
        await raw.stop()
        for p in procs:
            p.close()
