"""Peers: Pyro5 and RPyC echo, one client thread and 64 client threads (one proxy / connection
each), interleaved with node-comm over gRPC at 64 concurrent callers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .common import Sample, ServerProcess, Settings, conc_loop, interleave, log, seq_loop, small_payload
from .grpc_bench import SERVER_ID, client_node
from .report import Results


def _threads_round(calls: list[Callable[[int], Any]], seconds: float) -> Sample:
    """Each thread runs its own ``call`` back to back for ``seconds``; calls/s over all threads."""
    counts = [0] * len(calls)
    lats: list[list[float]] = [[] for _ in calls]
    barrier = threading.Barrier(len(calls) + 1)
    end = [0.0]

    def worker(k: int) -> None:
        call, lat = calls[k], lats[k]
        clock = time.perf_counter
        barrier.wait()
        stop = end[0]
        i = k << 32
        while True:
            t0 = clock()
            call(i)
            t1 = clock()
            lat.append(t1 - t0)
            i += 1
            if t1 >= stop:
                break
        counts[k] = i - (k << 32)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    start = time.perf_counter()
    end[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return Sample(sum(counts) / elapsed, [x for lat in lats for x in lat])


class _Proxies:
    """``n`` Pyro5 proxies / RPyC connections, made once and reused by the round threads."""

    def __init__(self, info: dict[str, Any], n: int) -> None:
        import Pyro5.api
        import rpyc

        self.pyro = [Pyro5.api.Proxy(info["pyro"]) for _ in range(n)]
        self.rpyc = [rpyc.connect("127.0.0.1", info["rpyc_port"]) for _ in range(n)]

    def pyro_calls(self, n: int) -> list[Callable[[int], Any]]:
        out = []
        for p in self.pyro[:n]:

            def call(i: int, p: Any = p) -> Any:
                p._pyroClaimOwnership()  # a Pyro5 proxy belongs to one thread at a time
                return p.echo(small_payload(i))

            out.append(call)
        return out

    def rpyc_calls(self, n: int) -> list[Callable[[int], Any]]:
        out = []
        for c in self.rpyc[:n]:

            def call(i: int, c: Any = c) -> Any:
                return json.loads(c.root.echo(json.dumps(small_payload(i))))

            out.append(call)
        return out

    def close(self) -> None:
        for p in self.pyro:
            p._pyroClaimOwnership()
            p._pyroRelease()
        for c in self.rpyc:
            c.close()


async def run(settings: Settings, res: Results) -> None:
    log("peers: Pyro5 / RPyC ...")
    srv = ServerProcess("bench.peer_server")
    grpc_srv = ServerProcess("bench.server")
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    c, secs = settings.concurrency, settings.seconds
    try:
        info = await srv.ready()
        ginfo = await grpc_srv.ready()
        proxies = await loop.run_in_executor(pool, _Proxies, info, c)
        node, why = await client_node("bench-peers", ginfo["node"], ginfo["node_error"])
        try:
            pyro1, rpyc1 = proxies.pyro_calls(1), proxies.rpyc_calls(1)
            pyro_n, rpyc_n = proxies.pyro_calls(c), proxies.rpyc_calls(c)
            assert await loop.run_in_executor(pool, pyro1[0], 5) == small_payload(5)
            assert await loop.run_in_executor(pool, rpyc1[0], 5) == small_payload(5)

            def threads(calls: list[Callable[[int], Any]]) -> Callable[[], Any]:
                return lambda: loop.run_in_executor(pool, _threads_round, calls, secs)

            seq_systems: dict[str, Any] = {"Pyro5": threads(pyro1), "RPyC": threads(rpyc1)}
            systems: dict[str, Any] = {"Pyro5": threads(pyro_n), "RPyC": threads(rpyc_n)}
            if node is not None:
                call = node.call

                async def n(i: int) -> Any:
                    return await call(SERVER_ID, "echo", small_payload(i))

                seq_systems = {"node-comm": lambda: seq_loop(n, secs), **seq_systems}
                systems = {"node-comm": lambda: conc_loop(n, secs, c), **systems}
            seq = await interleave(seq_systems, settings.rounds)
            sfigs = {k: res.figure("peers.seq", k, v, "calls/s") for k, v in seq.items()}
            sbest = max(("Pyro5", "RPyC"), key=lambda k: sfigs[k]["median"])
            if node is not None:
                res.ratio("grpc seq vs best peer (1 thread)", sfigs["node-comm"], sfigs[sbest], None)
            conc = await interleave(systems, settings.rounds)
            figs = {k: res.figure("peers.conc64", k, v, "calls/s") for k, v in conc.items()}
            best = max(("Pyro5", "RPyC"), key=lambda k: figs[k]["median"])
            if node is not None:
                res.ratio(f"grpc {c}-conc vs best peer ({c} threads)", figs["node-comm"], figs[best], 2.0)
            else:
                res.skip(f"grpc {c}-conc vs best peer ({c} threads)", why or "grpc transport not available", figs[best])
        finally:
            if node is not None:
                await node.stop(grace=0)
            await loop.run_in_executor(pool, proxies.close)
    finally:
        pool.shutdown()
        srv.close()
        grpc_srv.close()
