"""Federated averaging end to end: a coordinator and participants in separate processes over gRPC.

Starts the coordinator and N participants with ``node-comm run``, freezes one participant when a
round's weights reach it and kills it (SIGKILL) while the round waits for it, restarts it, waits
for the rounds to finish, scrapes the coordinator's Prometheus metrics once, checks that the final
model's loss is lower than the first round's, and prints a summary. Exit status 0 when all of that
held, 1 otherwise. The model is 50 MiB by default; ``make example`` runs it with ``--model-mb 8``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the directory that holds the `examples` package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_comm_cmd() -> list[str]:
    """``node-comm`` next to this interpreter (a venv's bin/), else ``python -m node_comm``."""
    exe = shutil.which("node-comm", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "node_comm"]


class Demo:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.port, self.metrics_port = free_port(), free_port()
        self.env = dict(
            os.environ,
            NODE_COMM_TOKEN=os.environ.get("NODE_COMM_TOKEN") or secrets.token_hex(32),
            FL_PORT=str(self.port),
            FL_METRICS_PORT=str(self.metrics_port),
            FL_COORDINATOR=f"127.0.0.1:{self.port}",
            FL_ROUNDS=str(args.rounds),
            FL_MODEL_MB=str(args.model_mb),
            FL_PARTICIPANTS=str(args.participants),
            FL_MIN_PARTICIPANTS=str(args.min_participants),
            FL_JOIN_GRACE="30",  # a restarted participant on a busy machine still rejoins the next round
            PYTHONUNBUFFERED="1",
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def log(self, text: str) -> None:
        print(f"[demo] {text}", flush=True)

    def start_coordinator(self) -> None:
        read_fd, write_fd = os.pipe()
        cmd = [
            *node_comm_cmd(),
            "run",
            str(HERE / "coordinator.yaml"),
            "--app",
            "examples.federated_averaging.coordinator:setup",
            "--app-dir",
            str(ROOT),
            "--log-level",
            "warning",
        ]
        self.log(
            "$ node-comm run examples/federated_averaging/coordinator.yaml "
            "--app examples.federated_averaging.coordinator:setup"
        )
        env = dict(self.env, FL_STATUS_FD=str(write_fd))
        self.procs["coordinator"] = subprocess.Popen(cmd, env=env, pass_fds=(write_fd,))
        os.close(write_fd)
        threading.Thread(target=self._read_status, args=(read_fd,), daemon=True).start()

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd) as f:
            for line in f:
                self.events.put(json.loads(line))
        self.events.put(None)  # the coordinator exited

    def start_participant(self, name: str, *, freeze_in_round: int = 0) -> None:
        cmd = [
            *node_comm_cmd(),
            "run",
            str(HERE / "participant.yaml"),
            "--app",
            "examples.federated_averaging.participant:setup",
            "--app-dir",
            str(ROOT),
        ]
        env = dict(self.env, FL_NODE_ID=name, FL_FREEZE_IN_ROUND=str(freeze_in_round))
        logfile = open(self.workdir / f"{name}.log", "ab")  # the child keeps its own copy
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=subprocess.STDOUT)
        logfile.close()

    def next_event(self, deadline: float) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise SystemExit(self.fail(f"timed out after {self.args.timeout:g}s")) from None
        if event is None:
            raise SystemExit(self.fail(f"the coordinator exited (status {self.procs['coordinator'].wait()})"))
        if event["event"] == "failed":
            raise SystemExit(self.fail(f"the coordinator failed: {event['error']}"))
        return event

    def fail(self, why: str) -> int:
        print(f"[demo] FAILED: {why}", file=sys.stderr)
        for name in self.procs:
            path = self.workdir / f"{name}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-15:]
                print(f"--- last lines of {name}'s log:", *tail, sep="\n", file=sys.stderr)
        return 1

    def run(self) -> int:
        args = self.args
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        victim = f"p{args.kill}" if args.kill else None
        names = [f"p{i}" for i in range(1, args.participants + 1)]
        self.log(
            f"coordinator on 127.0.0.1:{self.port} (metrics :{self.metrics_port}), participants {', '.join(names)} "
            f"(dial-only); {args.rounds} rounds of a {args.model_mb:g} MiB model; peers share a random token"
        )
        self.start_coordinator()
        for name in names:
            freeze = args.kill_round if name == victim else 0
            self.start_participant(name, freeze_in_round=freeze)
        self.log(
            f"$ FL_NODE_ID=pN node-comm run examples/federated_averaging/participant.yaml "
            f"--app examples.federated_averaging.participant:setup   (x{len(names)}; logs in {self.workdir})"
        )
        killed_in: int | None = None
        rejoined_in: int | None = None
        while True:
            event = self.next_event(deadline)
            kind = event["event"]
            if kind == "round_started" and victim and event["round"] == args.kill_round and killed_in is None:
                if victim not in event["targets"]:
                    return self.fail(f"{victim} was not connected when round {args.kill_round} started")
                proc = self.procs[victim]
                _, state = os.waitpid(proc.pid, os.WUNTRACED)  # it freezes itself when the weights arrive
                if not os.WIFSTOPPED(state):
                    return self.fail(f"{victim} exited in round {args.kill_round} instead of freezing")
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_in = event["round"]
                self.log(f"{victim} froze in round {killed_in}: SIGKILL; restarting it")
                self.start_participant(victim)
            elif kind == "round_done":
                if (
                    victim
                    and killed_in is not None
                    and rejoined_in is None
                    and victim in event["participants"]
                    and event["round"] > killed_in
                ):
                    rejoined_in = event["round"]
            elif kind == "done":
                summary = event
                break
        metrics = self.scrape()
        return self.report(summary, metrics, victim, killed_in, rejoined_in, time.monotonic() - t0)

    def scrape(self) -> list[str]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        lines = [
            ln
            for ln in text.splitlines()
            if (ln.startswith("node_comm_calls_total{") and 'method="fit"' in ln)
            or ln.startswith("node_comm_connected_peers{")
        ]
        self.log(f"scraped {url} ({len(text.splitlines())} lines):")
        for ln in sorted(lines):
            print("  " + ln)
        return lines

    def report(
        self,
        summary: dict[str, Any],
        metrics: list[str],
        victim: str | None,
        killed_in: int | None,
        rejoined_in: int | None,
        seconds: float,
    ) -> int:
        problems = []
        if summary["rounds"] != self.args.rounds:
            problems.append(f"{summary['rounds']} rounds finished, not {self.args.rounds}")
        if not summary["final_loss"] < summary["initial_loss"]:
            problems.append(f"the loss did not decrease: {summary['initial_loss']:.4f} -> {summary['final_loss']:.4f}")
        if victim:
            hit = next((h for h in summary["history"] if h["round"] == killed_in), None)
            if hit is None or hit["failed"].get(victim) != "ConnectionLostError":
                problems.append(f"round {killed_in} did not go on without {victim} (ConnectionLostError): {hit}")
            if rejoined_in is None:
                problems.append(f"{victim} did not take part in a round after its restart")
        if not any('method="fit"' in ln for ln in metrics):
            problems.append("no node_comm_calls_total for fit in the coordinator's metrics")
        result = {
            "ok": not problems,
            "rounds": summary["rounds"],
            "initial_loss": round(summary["initial_loss"], 4),
            "final_loss": round(summary["final_loss"], 4),
            "killed": victim,
            "killed_in_round": killed_in,
            "rejoined_in_round": rejoined_in,
            "seconds": round(seconds, 1),
            "problems": problems,
        }
        print("summary: " + json.dumps(result), flush=True)
        if problems:
            return self.fail("; ".join(problems))
        self.log(
            f"OK: {summary['rounds']} rounds, loss {summary['initial_loss']:.4f} -> {summary['final_loss']:.4f}"
            + (f", {victim} killed in round {killed_in} and back in round {rejoined_in}" if victim else "")
            + f", {seconds:.1f}s"
        )
        return 0

    def abort(self) -> None:
        print(f"[demo] FAILED: stuck past --timeout {self.args.timeout:g}s; killing everything", file=sys.stderr)
        for proc in self.procs.values():
            proc.kill()
        os._exit(1)

    def stop(self) -> None:
        """SIGTERM the coordinator, then the participants (each stops gracefully)."""
        coordinator = self.procs.pop("coordinator", None)
        for group in ([coordinator] if coordinator else [], list(self.procs.values())):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)  # a frozen one must run to see SIGTERM
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--participants", type=int, default=3, help="participants to start (default 3)")
    p.add_argument("--min-participants", type=int, default=2, help="fewest a round may start with (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of FedAvg (default 5)")
    p.add_argument(
        "--model-mb", type=float, default=50.0, help="model size in MiB of float32 (default 50; make example: 8)"
    )
    p.add_argument(
        "--kill",
        type=int,
        default=2,
        metavar="N",
        help="participant pN is killed mid-round and restarted (default 2; 0: none)",
    )
    p.add_argument("--kill-round", type=int, default=2, help="the round it is killed in (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before the demo gives up (default 120)")
    args = p.parse_args(argv)
    if args.participants < 1 or not 1 <= args.min_participants <= args.participants or args.rounds < 1:
        p.error("need --rounds >= 1 and 1 <= --min-participants <= --participants")
    if args.kill:
        if not 1 <= args.kill <= args.participants:
            p.error(f"--kill {args.kill}: there are participants p1..p{args.participants}")
        if not 1 <= args.kill_round < args.rounds:
            p.error("--kill-round must come before the last round, so the restarted participant can rejoin a round")
        if args.participants - 1 < args.min_participants:
            p.error("with one participant killed, fewer than --min-participants would remain")
    with tempfile.TemporaryDirectory(prefix="fl-demo-") as tmp:
        demo = Demo(args, Path(tmp))
        watchdog = threading.Timer(args.timeout + 30, demo.abort)  # for a wait that cannot time out itself
        watchdog.daemon = True
        watchdog.start()
        try:
            return demo.run()
        except SystemExit as exc:
            return int(exc.code or 0)
        finally:
            watchdog.cancel()
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
