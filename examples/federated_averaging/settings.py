"""The example's knobs, read from the environment (``node-comm run`` passes only the node to
``setup``). ``run_demo.py`` sets them from its flags."""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


#: Rounds of federated averaging the coordinator runs.
ROUNDS = _int("FL_ROUNDS", 5)
#: Size of the model's weights in MiB (float32); ~50 MiB by default, a small one for ``make example``.
MODEL_MB = _float("FL_MODEL_MB", 50.0)
#: Participants the coordinator waits for before a round, at most ``JOIN_GRACE`` seconds ...
PARTICIPANTS = _int("FL_PARTICIPANTS", 3)
JOIN_GRACE = _float("FL_JOIN_GRACE", 10.0)
#: ... after which a round starts with at least this many (it waits as long as it takes for them).
MIN_PARTICIPANTS = _int("FL_MIN_PARTICIPANTS", 2)
#: Seconds a participant has to train and answer before it is left out of the round.
ROUND_TIMEOUT = _float("FL_ROUND_TIMEOUT", 120.0)
#: Seed of the shared task (the participants' own data is seeded by their node ids too).
SEED = _int("FL_SEED", 7)
#: Port the coordinator serves Prometheus metrics on (0: none).
METRICS_PORT = _int("FL_METRICS_PORT", 9464)
#: A file descriptor the coordinator writes its progress to, one JSON object a line (for the driver).
STATUS_FD = os.environ.get("FL_STATUS_FD")
#: Fault injection for the demo: a participant freezes itself (SIGSTOP) when this round's weights
#: arrive, so the driver's SIGKILL lands while the round waits for it, however fast the machine.
FREEZE_IN_ROUND = _int("FL_FREEZE_IN_ROUND", 0)
