"""The coordinator: ``node-comm run coordinator.yaml --app examples.federated_averaging.coordinator:setup``.

Each round it waits for the participants, broadcasts the global weights to them (``numpy``
serializer), and averages the weights they send back, weighted by their sample counts (FedAvg). A
participant that dies mid-round comes back from ``broadcast`` as a ``ConnectionLostError``: the
round goes on with the others. After the last round it evaluates the final model on every
participant's data, prints a summary and keeps serving (metrics stay up) until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from node_comm import DisconnectKind, Node, NodeCommError, NodeNotStartedError, PeersNotConnectedError

from . import settings
from .model import Weights, fedavg, initial_weights, model_shape, nbytes

try:  # optional: pip install tqdm (make example installs it)
    from tqdm import tqdm
except ImportError:  # pragma: no cover - plain lines only
    tqdm = None


def say(text: str) -> None:
    """A line of the coordinator's own output (above the progress bars, when there are any)."""
    if tqdm is not None:
        tqdm.write(text, file=sys.stdout)
    else:
        print(text, flush=True)


class Status:
    """Progress as JSON lines on ``FL_STATUS_FD`` (for run_demo.py); nothing when it is unset."""

    def __init__(self, fd: str | None) -> None:
        self._file = os.fdopen(int(fd), "w", buffering=1) if fd else None

    def __call__(self, event: str, **fields: Any) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")


class Bars:
    """One bar per participant for the bytes of a round: the weights sent, then its update received
    (from ``broadcast``'s progress callback, called for payloads that travel in chunks). Shown only
    when stdout is a terminal and tqdm is installed."""

    def __init__(self, round_no: int, targets: list[str], size: int) -> None:
        on = tqdm is not None and sys.stdout.isatty()
        self._size = size
        self._bars = (
            {
                t: tqdm(
                    total=2 * size,
                    desc=f"round {round_no} {t}",
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    leave=False,
                    position=i,
                    file=sys.stdout,
                )
                for i, t in enumerate(targets)
            }
            if on
            else {}
        )

    def progress(self, target: str, direction: str, done: int, total: int) -> None:
        bar = self._bars.get(target)
        if bar is not None:
            bar.total = self._size + total if direction == "received" else 2 * total
            bar.n = done + (self._size if direction == "received" else 0)
            bar.set_postfix_str("update received" if direction == "received" else "weights sent", refresh=True)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


_jobs: set[asyncio.Task[None]] = set()


def setup(node: Node) -> None:
    """Log joins and leaves, and start the training job once the first participant connects."""
    status = Status(settings.STATUS_FD)
    first = asyncio.Event()  # the node has started and a participant is connected

    def joined(peer: str, address: str | None) -> None:
        say(f"+ {peer} joined ({len(node.connected_nodes)} connected)")
        status("joined", peer=peer)
        first.set()

    def left(peer: str, reason: Any) -> None:
        if getattr(reason, "kind", None) == DisconnectKind.LOCAL:
            return  # this node is stopping: nothing to say about each peer
        say(f"- {peer} left: {getattr(reason, 'kind', 'lost')} ({reason})")
        status("left", peer=peer, kind=str(getattr(reason, "kind", "")))

    node.on("connect", joined).on("disconnect", left)
    if settings.METRICS_PORT:
        # TODO(metrics port): replace with `options: {port: ...}` of the metrics interceptor in
        # coordinator.yaml once load_config() no longer binds that port a first time (see the YAML).
        import prometheus_client

        prometheus_client.start_http_server(settings.METRICS_PORT, addr="127.0.0.1")
        say(f"metrics on http://127.0.0.1:{settings.METRICS_PORT}/metrics")
    job = asyncio.get_running_loop().create_task(train(node, first, status))
    _jobs.add(job)  # keep a reference: the loop holds tasks only weakly
    job.add_done_callback(_jobs.discard)


async def wait_for_participants(node: Node) -> list[str]:
    """All expected participants if they come within ``JOIN_GRACE`` seconds, else at least ``MIN_PARTICIPANTS``."""
    try:
        return await node.wait_for_peers(settings.PARTICIPANTS, timeout=settings.JOIN_GRACE)
    except PeersNotConnectedError as exc:
        say(
            f"  only {len(exc.connected)} of {settings.PARTICIPANTS} participants connected; "
            f"waiting for {settings.MIN_PARTICIPANTS}"
        )
        return await node.wait_for_peers(settings.MIN_PARTICIPANTS)


async def train(node: Node, first: asyncio.Event, status: Status) -> None:
    try:
        await first.wait()
        await run_rounds(node, status)
    except NodeNotStartedError:
        return  # stopped by SIGINT/SIGTERM mid-job
    except Exception as exc:
        say(f"training failed: {type(exc).__name__}: {exc}")
        status("failed", error=f"{type(exc).__name__}: {exc}")
        raise


async def run_rounds(node: Node, status: Status) -> None:
    d, k = model_shape(settings.MODEL_MB)
    weights = initial_weights(d, k)
    size = nbytes(weights)
    say(f"model: {d}x{k} linear, {size / 2**20:.1f} MiB of float32; {settings.ROUNDS} rounds of FedAvg")
    started = time.perf_counter()
    history: list[dict[str, Any]] = []
    round_no = 1
    while round_no <= settings.ROUNDS:
        targets = await wait_for_participants(node)
        status("round_started", round=round_no, targets=targets)
        bars = Bars(round_no, targets, size)
        t0 = time.perf_counter()
        try:
            results = await node.broadcast(
                "fit",
                {"weights": weights},
                targets=targets,
                serializer="numpy",
                timeout=settings.ROUND_TIMEOUT,
                metadata={"round": str(round_no)},
                progress=bars.progress,
            )
        finally:
            bars.close()
        seconds = time.perf_counter() - t0
        ok = {p: r for p, r in results.items() if not isinstance(r, BaseException)}
        failed = {p: f"{type(r).__name__}" for p, r in results.items() if isinstance(r, BaseException)}
        for p, exc in sorted(results.items()):
            if isinstance(exc, BaseException):
                say(f"  {p}: left out of round {round_no}: {type(exc).__name__}: {exc}")
        if len(ok) < settings.MIN_PARTICIPANTS:
            say(f"round {round_no}: only {len(ok)} updates (< {settings.MIN_PARTICIPANTS}); repeating the round")
            status("round_repeated", round=round_no, failed=failed)
            continue
        weights = fedavg([(r["weights"], r["samples"]) for r in ok.values()])
        samples = sum(r["samples"] for r in ok.values())
        round_loss = sum(r["loss"] * r["samples"] for r in ok.values()) / samples
        took = ", ".join(sorted(ok))
        say(
            f"round {round_no}/{settings.ROUNDS}: {len(ok)} of {len(targets)} participants ({took}), "
            f"{samples} samples, loss {round_loss:.4f}, {seconds:.2f}s"
        )
        entry = {
            "round": round_no,
            "participants": sorted(ok),
            "failed": failed,
            "loss": round_loss,
            "seconds": seconds,
        }
        history.append(entry)
        status("round_done", **entry)
        round_no += 1
    final = await evaluate(node, weights)
    summary = {
        "rounds": len(history),
        "initial_loss": history[0]["loss"],
        "final_loss": final,
        "model_bytes": size,
        "seconds": time.perf_counter() - started,
        "history": history,
    }
    say(
        f"done: {len(history)} rounds in {summary['seconds']:.1f}s, loss {history[0]['loss']:.4f} -> {final:.4f} "
        "(final model on every participant's data); serving until SIGINT/SIGTERM"
    )
    status("done", **summary)


async def evaluate(node: Node, weights: Weights) -> float:
    """The loss of ``weights`` over every participant's data (each weighted by its sample count)."""
    targets = await wait_for_participants(node)
    results = await node.broadcast(
        "evaluate", {"weights": weights}, targets=targets, serializer="numpy", timeout=settings.ROUND_TIMEOUT
    )
    ok = [r for r in results.values() if not isinstance(r, BaseException)]
    if not ok:
        raise NodeCommError(f"no participant could evaluate the final model: {results}")
    return sum(r["loss"] * r["samples"] for r in ok) / sum(r["samples"] for r in ok)
