"""``make soak``: many calls with random timeouts and cancellations, and forced reconnects (every
tenth one kills the peer process with SIGKILL and starts it again), against peers in other
processes over gRPC (authenticated by a shared secret). Every result must match its request
(nothing lost, duplicated or delivered to the wrong caller); at the end the pending and inbound
tables are empty on every node and fds, tasks and RSS are back near their start.

``python -m bench.soak [--calls N] [--reconnects R] [--peers P]``; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
from pathlib import Path

from node_comm import CallTimeoutError, GrpcTransportConfig, Node, NodeCommError, NodeConfig, TransportConfig

PEER = Path(__file__).resolve().parents[1] / "tests" / "grpc" / "peer.py"
SECRET = "soak-secret"


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def start_peer(node_id: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), node_id, "0", "--token", SECRET, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line.startswith(b"READY "):
        raise RuntimeError(f"peer {node_id} did not start: {line!r}")
    return proc, line.split()[1].decode()


class Tally:
    def __init__(self) -> None:
        self.ok = self.timeouts = self.cancelled = self.lost = self.mismatches = 0

    def line(self) -> str:
        return (
            f"ok={self.ok} timeouts={self.timeouts} cancelled={self.cancelled} "
            f"connection-lost={self.lost} MISMATCHES={self.mismatches}"
        )


async def one_call(node: Node, peers: list[str], n: int, tally: Tally) -> None:
    target = random.choice(peers)
    kind = random.random()
    token = f"{n}-{random.getrandbits(32)}"
    try:
        if kind < 0.6:  # plain echo: the answer must be this call's
            result = await node.call(target, "echo", token, timeout=10)
        elif kind < 0.8:  # random short timeout: either the right answer or a timeout
            result = await node.call(target, "echo", token, timeout=random.uniform(0.0005, 0.01))
        elif kind < 0.9:  # the handler outlives the timeout: remote cancellation
            await node.call(target, "sleep", 0.05, timeout=random.uniform(0.001, 0.02))
            tally.mismatches += 1  # a sleep of 50 ms cannot finish within 20 ms
            return
        else:  # cancelled by the caller at a random moment
            task = asyncio.ensure_future(node.call(target, "echo", token, timeout=10))
            await asyncio.sleep(random.uniform(0, 0.002))
            task.cancel()
            try:
                result = await task
            except asyncio.CancelledError:
                tally.cancelled += 1
                return
        if result == token:
            tally.ok += 1
        else:
            tally.mismatches += 1
    except CallTimeoutError:
        tally.timeouts += 1
    except NodeCommError:
        tally.lost += 1  # the link was being reconnected


async def soak(calls: int, reconnects: int, n_peers: int, concurrency: int) -> int:
    procs = [await start_peer(f"p{i}") for i in range(n_peers)]
    config = NodeConfig(
        node_id="coord",
        transport=TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=None, token=SECRET)),
    )
    node = Node("coord", config)
    await node.start()
    peers = [f"p{i}" for i in range(n_peers)]
    for pid, (_, address) in zip(peers, procs, strict=True):
        await node.connect(pid, address)
    for pid in peers:  # warm up before the baseline
        await node.call(pid, "echo", 0)
    gc.collect()
    base = {"fds": fds(), "tasks": len(asyncio.all_tasks()), "rss": rss_mib()}
    tally = Tally()
    t0 = time.monotonic()
    done = 0
    every = max(1, calls // max(1, reconnects))
    forced = 0
    sem = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def guarded(n: int) -> None:
        async with sem:
            await one_call(node, peers, n, tally)

    for n in range(calls):
        if (n + 1) % every == 0 and forced < reconnects:
            pid = random.choice(peers)
            i = peers.index(pid)
            if forced % 10 == 9:  # every tenth: the peer process is killed and started again
                procs[i][0].kill()
                await procs[i][0].wait()
                procs[i] = await start_peer(pid)
            else:
                await node.disconnect(pid, "soak: forced reconnect")
            await node.connect(pid, procs[i][1])
            forced += 1
        await sem.acquire()
        sem.release()
        task = asyncio.ensure_future(guarded(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
        done += 1
        if done % 20000 == 0:
            print(f"  {done} calls, {forced} reconnects, {time.monotonic() - t0:.0f}s: {tally.line()}", flush=True)
    await asyncio.gather(*pending)
    elapsed = time.monotonic() - t0
    await asyncio.sleep(0.2)  # let the last CANCELs and replies land
    remote = [await node.call(pid, "stats", None) for pid in peers]
    gc.collect()
    end = {"fds": fds(), "tasks": len(asyncio.all_tasks()), "rss": rss_mib()}
    local = {"pending": len(node._pending), "inbound": sum(len(p.inbound) for p in node._peers.values())}
    await node.stop()
    for proc, _ in procs:
        proc.terminate()
        await proc.wait()
    print(f"soak: {calls} calls ({calls / elapsed:,.0f}/s) and {forced} forced reconnects in {elapsed:.1f}s")
    print(f"  outcomes: {tally.line()}")
    print(f"  coordinator: pending={local['pending']} inbound={local['inbound']}")
    for pid, st in zip(peers, remote, strict=True):
        print(f"  {pid}: pending={st['pending']} inbound={st['inbound']} tasks={st['tasks']}")
    print(
        f"  fds {base['fds']} -> {end['fds']}, tasks {base['tasks']} -> {end['tasks']}, "
        f"RSS {base['rss']:.0f} -> {end['rss']:.0f} MiB"
    )
    failed = (
        tally.mismatches
        or local["pending"]
        or local["inbound"]
        or any(st["pending"] or st["inbound"] > 0 for st in remote)
        or end["fds"] > base["fds"] + 4
        or end["tasks"] > base["tasks"] + 4
        or end["rss"] > base["rss"] * 1.5 + 50
    )
    print("soak: FAILED" if failed else "soak: passed")
    return 1 if failed else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--reconnects", type=int, default=100)
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    sys.exit(asyncio.run(soak(args.calls, args.reconnects, args.peers, args.concurrency)))


if __name__ == "__main__":
    main()
