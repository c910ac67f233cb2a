"""examples/federated_averaging end to end: its driver starts a coordinator and 3 participants with
`node-comm run` (separate processes over gRPC), kills one mid-round and restarts it; the run must
finish its rounds with a lower loss, and the killed participant must be left out of that round only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("prometheus_client")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "federated_averaging" / "run_demo.py"


def test_fedavg_weights_each_participant_by_its_sample_count() -> None:
    from examples.federated_averaging.model import fedavg

    a = {"w": np.full(3, 1.0, np.float32)}
    b = {"w": np.full(3, 4.0, np.float32)}
    np.testing.assert_allclose(fedavg([(a, 2), (b, 1)])["w"], 2.0)


@pytest.mark.timeout(90)
def test_demo_survives_a_participant_killed_mid_round() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--model-mb", "0.05", "--rounds", "3", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("summary: "))
    summary = json.loads(line.removeprefix("summary: "))
    assert summary["ok"] and summary["problems"] == []
    assert summary["rounds"] == 3
    assert summary["final_loss"] < summary["initial_loss"]
    assert (summary["killed"], summary["killed_in_round"], summary["rejoined_in_round"]) == ("p2", 2, 3)
    out = proc.stdout
    assert "p2: left out of round 2: ConnectionLostError" in out
    assert "round 2/3: 2 of 3 participants (p1, p3)" in out
    assert "round 3/3: 3 of 3 participants (p1, p2, p3)" in out
    assert 'node_comm_calls_total{code="UNAVAILABLE",direction="outbound",method="fit"' in out


def test_demo_refuses_a_kill_in_the_last_round() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--rounds", "2", "--kill-round", "2"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "--kill-round must come before the last round" in proc.stderr
