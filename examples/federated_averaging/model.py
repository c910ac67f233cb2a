"""The learning task, in plain numpy: a linear model fitted by gradient steps, and FedAvg.

The model maps ``d`` features to ``k`` outputs: ``{"dense.kernel": (d, k), "dense.bias": (k,)}``,
float32. Every participant draws its own features (seeded by its node id, so a restarted
participant has the same data) and labels from one shared low-rank linear map plus noise (seeded
by ``FL_SEED``), so the participants' data differ but the task is the same.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

Weights = dict[str, np.ndarray]

RANK = 4  # rank of the true linear map
NOISE = 0.05


def model_shape(size_mb: float) -> tuple[int, int]:
    """``(d, k)`` of a square-ish kernel of about ``size_mb`` MiB of float32."""
    side = max(8, int(math.sqrt(size_mb * 2**20 / 4)))
    return side, side


def initial_weights(d: int, k: int) -> Weights:
    return {"dense.kernel": np.zeros((d, k), np.float32), "dense.bias": np.zeros(k, np.float32)}


def nbytes(weights: Weights) -> int:
    return sum(a.nbytes for a in weights.values())


def local_data(node_id: str, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """This participant's samples ``(x, y)``: 64 to 191 of them, a count fixed by its id."""
    own = np.random.default_rng([seed, zlib.crc32(node_id.encode())])
    n = 64 + zlib.crc32(node_id.encode()) % 128
    x = own.standard_normal((n, d), np.float32) / np.float32(math.sqrt(d))
    shared = np.random.default_rng(seed)
    a = shared.standard_normal((d, RANK), np.float32)
    b = shared.standard_normal((RANK, k), np.float32) / np.float32(math.sqrt(RANK))
    y = (x @ a) @ b + 0.5 + NOISE * own.standard_normal((n, k), np.float32)
    return x, y.astype(np.float32)


def loss(weights: Weights, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over every output of every sample."""
    r = x @ weights["dense.kernel"] + weights["dense.bias"] - y
    return float(np.mean(r * r))


def train_step(weights: Weights, x: np.ndarray, y: np.ndarray) -> tuple[Weights, float]:
    """One full-batch gradient step on half the summed squared error, with the step size
    ``1 / (1 + sqrt(n/d))**2`` (the inverse of the curvature of random features); returns the new
    weights and the loss before the step."""
    kernel, bias = weights["dense.kernel"], weights["dense.bias"]
    n, d = x.shape
    lr = np.float32(1 / (1 + math.sqrt(n / d)) ** 2)
    r = x @ kernel + bias - y
    before = float(np.mean(r * r))
    new = {"dense.kernel": kernel - lr * (x.T @ r), "dense.bias": bias - np.float32(0.5) * r.mean(axis=0)}
    return new, before


def fedavg(updates: list[tuple[Weights, int]]) -> Weights:
    """The average of the participants' weights, each weighted by its sample count."""
    total = sum(n for _, n in updates)
    out = {name: np.zeros_like(a) for name, a in updates[0][0].items()}
    for weights, n in updates:
        for name, a in weights.items():
            out[name] += a * np.float32(n / total)
    return out
