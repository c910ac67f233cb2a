"""A participant: ``node-comm run participant.yaml --app examples.federated_averaging.participant:setup``.

Dial-only (``port: null``, e.g. behind NAT): it dials the coordinator named under ``peers:`` and
serves two methods over that one connection. ``fit`` takes the global weights, takes one gradient
step on this participant's own data and returns the new weights with its sample count; ``evaluate``
returns the loss of the given weights on its data. Both use the ``numpy`` serializer and accept
only authenticated callers (the peers share ``transport.grpc.token``).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from node_comm import CallContext, MethodOptions, Node

from . import settings
from .model import Weights, local_data, loss, train_step

log = logging.getLogger("fl.participant")

NUMPY = MethodOptions(serializer="numpy", authenticated_only=True)


def setup(node: Node) -> None:
    """Register ``fit`` and ``evaluate``; the data is drawn on the first call (its shape is the model's)."""
    data: dict[tuple[int, int], Any] = {}

    def my_data(weights: Weights) -> Any:
        d, k = weights["dense.kernel"].shape
        if (d, k) not in data:
            data[(d, k)] = local_data(node.node_id, d, k, settings.SEED)
        return data[(d, k)]

    # Plain `def` handlers: numpy work runs in the node's handler threads, off the event loop.
    def fit(payload: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        round_no = int(ctx.metadata.get("round", "0"))
        if round_no == settings.FREEZE_IN_ROUND:
            log.warning("round %d: freezing (FL_FREEZE_IN_ROUND fault injection)", round_no)
            os.kill(os.getpid(), signal.SIGSTOP)
        x, y = my_data(payload["weights"])
        start = time.perf_counter()
        weights, before = train_step(payload["weights"], x, y)
        seconds = time.perf_counter() - start
        log.info("round %d: %d samples, loss %.4f, step %.2fs", round_no, len(x), before, seconds)
        return {"weights": weights, "samples": len(x), "loss": before, "train_seconds": seconds}

    def evaluate(payload: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        x, y = my_data(payload["weights"])
        return {"samples": len(x), "loss": loss(payload["weights"], x, y)}

    node.register("fit", fit, NUMPY)
    node.register("evaluate", evaluate, NUMPY)
