"""Shared pieces: timing loops, interleaved rounds, statistics, server processes, RSS probes."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_MSG = "hello"


def small_payload(i: int) -> dict[str, Any]:
    """The small payload every small-call workload echoes."""
    return {"msg": PAYLOAD_MSG, "i": i}


@dataclass
class Settings:
    """How long each measurement runs; ``quick`` shrinks everything for a smoke run."""

    quick: bool = False
    rounds: int = 5
    seconds: float = 1.0  # per in-process round and system
    concurrency: int = 64
    large_sizes: tuple[int, ...] = (1 << 20, 64 << 20)
    huge: bool = False  # 1 GiB echo (full mode only)
    fanout_sizes: tuple[int, ...] = (1, 10, 100, 1000)
    fanout_procs: int = 4

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, rounds=5, seconds=0.25, fanout_sizes=(1, 10, 100), fanout_procs=2)
        return cls(huge=True)


@dataclass
class Sample:
    """One round of one system: a rate (calls/s or MB/s) and, optionally, call latencies (s)."""

    rate: float
    latencies: list[float] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def summary(values: list[float]) -> dict[str, float]:
    """median, min, max of a list of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


Runner = Callable[[], Awaitable[Sample]]


async def interleave(systems: dict[str, Runner], rounds: int, warmup: bool = True) -> dict[str, list[Sample]]:
    """Run every system once per round, in turn (A B A B ...), so machine speed swings hit all
    of them alike. The order within a round alternates so no system always goes first."""
    names = list(systems)
    if warmup:
        for name in names:
            await systems[name]()
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(await systems[name]())
    return out


async def seq_loop(call: Callable[[int], Awaitable[Any]], seconds: float) -> Sample:
    """One caller, back to back, for ``seconds``: calls/s and every call's latency."""
    lat: list[float] = []
    append = lat.append
    clock = time.perf_counter
    start = clock()
    end = start + seconds
    i = 0
    while True:
        t0 = clock()
        await call(i)
        t1 = clock()
        append(t1 - t0)
        i += 1
        if t1 >= end:
            break
    return Sample(i / (t1 - start), lat)


async def conc_loop(call: Callable[[int], Awaitable[Any]], seconds: float, concurrency: int) -> Sample:
    """``concurrency`` callers on one loop, each back to back, for ``seconds``."""
    lat: list[float] = []
    append = lat.append
    clock = time.perf_counter
    count = 0
    start = clock()
    end = start + seconds

    async def worker(w: int) -> None:
        nonlocal count
        i = w << 32
        while True:
            t0 = clock()
            await call(i)
            t1 = clock()
            append(t1 - t0)
            i += 1
            count += 1
            if t1 >= end:
                return

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return Sample(count / (clock() - start), lat)


# ---------------------------------------------------------------------------------------------- processes
class ServerProcess:
    """A helper process (``python -m bench.<module> ...``) that prints one JSON line with what it
    serves (ports, addresses), then serves until its stdin closes."""

    def __init__(self, module: str, *args: str) -> None:
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        self.info: dict[str, Any] = {}

    async def ready(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline), timeout)
        if not line:
            raise RuntimeError(f"helper process {self.proc.args} exited with {self.proc.wait()}")
        self.info = json.loads(line)
        return self.info

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


async def serve_until_stdin_closes(info: dict[str, Any]) -> None:
    """Helper-process side of :class:`ServerProcess`."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


# ---------------------------------------------------------------------------------------------- memory
def reset_peak_rss(pid: int | None = None) -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of a process (Linux; no-op elsewhere)."""
    try:
        with open(f"/proc/{pid or 'self'}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def trim_memory() -> None:
    """Give the memory malloc keeps after frees back to the OS (glibc ``malloc_trim``), so an idle
    mark is what is live: a large buffer grown by ``realloc`` from a small one lives in malloc's
    heap, and once freed stays resident (reused by the next payload) until trimmed."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def trim(payload: Any, ctx: Any) -> str:
    """A bench server's ``bench_trim`` method: :func:`trim_memory` in the server's process."""
    trim_memory()
    return "ok"


def current_rss(pid: int | None = None) -> float:
    """Resident memory (bytes) now (Linux VmRSS): the idle baseline a peak is measured above."""
    return _status_kib(pid, "VmRSS:")


def peak_rss(pid: int | None = None) -> float:
    """Peak resident memory (bytes) since the last :func:`reset_peak_rss` (Linux VmHWM)."""
    return _status_kib(pid, "VmHWM:")


def _status_kib(pid: int | None, key: str) -> float:
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith(key):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


def grpc_node_available() -> bool:
    """Whether the installed grpc transport is a real one (not the placeholder)."""
    return GRPC_UNAVAILABLE is None


GRPC_UNAVAILABLE: str | None = None


def set_grpc_unavailable(reason: str) -> None:
    global GRPC_UNAVAILABLE
    GRPC_UNAVAILABLE = reason


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
