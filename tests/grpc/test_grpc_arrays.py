"""numpy arrays over real gRPC sockets: the ``numpy`` serializer (between unauthenticated peers too)
and ``pickle`` (authenticated), each decoded over the reassembled payload without a copy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import SECRET, grpc_config

from node_comm import CallContext, Interceptor, Message, MethodOptions

np = pytest.importorskip("numpy")

MIB = 1 << 20


class Keep(Interceptor):
    """Keeps the payload of every message a node receives (inbound) or gets back (outbound)."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        self.payloads.append(message.payload)
        return await next_handler(message)

    async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        reply = await next_handler(message)
        self.payloads.append(reply.payload)
        return reply


def over(arr: Any, payload: Any) -> bool:
    return bool(np.shares_memory(arr, np.frombuffer(payload, np.uint8)))


@pytest.mark.parametrize("serializer", ["numpy", "pickle"])
async def test_dict_of_arrays_echoes_zero_copy(nodes: Callable[..., Any], serializer: str) -> None:
    token = SECRET if serializer == "pickle" else None  # numpy needs no authenticated peer
    b = await nodes("b", grpc_config("b", token=token))
    a = await nodes("a", grpc_config("a", port=None, token=token))
    kept_b, kept_a = Keep(), Keep()
    b.interceptors.add(kept_b)
    a.interceptors.add(kept_a)
    seen: dict[str, Any] = {}

    async def step(payload: Any, ctx: CallContext) -> Any:
        w = payload["layers"]
        seen["writable"] = all(v.flags.writeable for v in w.values())
        seen["zero_copy"] = all(over(v, kept_b.payloads[-1]) for v in w.values())
        w["l0"] += 1  # in place, over the received buffer
        return payload

    b.register("step", step, MethodOptions(serializer=serializer))
    await a.connect("b", b.address)
    rng = np.random.default_rng(1)
    layers = {f"l{i}": rng.random((1024, 1024), dtype=np.float32) for i in range(8)}  # 32 MiB
    sent = {"layers": layers, "round": 4, "lr": 0.01, "shape": (1024, 1024)}
    back = await a.call("b", "step", sent, serializer=serializer, timeout=60)
    assert seen == {"writable": True, "zero_copy": True}
    assert back["round"] == 4 and back["lr"] == 0.01 and back["shape"] == (1024, 1024)
    assert np.array_equal(back["layers"]["l0"], layers["l0"] + 1)
    for i in range(1, 8):
        got = back["layers"][f"l{i}"]
        assert got.dtype == np.float32 and np.array_equal(got, layers[f"l{i}"])
        assert got.flags.writeable and over(got, kept_a.payloads[-1])  # the reply: no copy either
    assert isinstance(kept_a.payloads[-1], bytearray) and len(kept_a.payloads[-1]) > 32 * MIB


async def test_small_numpy_payloads_arrive_writable(nodes: Callable[..., Any]) -> None:
    # Below chunk_size gRPC hands the payload as bytes: arrays are still writable (one copy).
    b = await nodes("b", grpc_config("b"))
    a = await nodes("a", grpc_config("a", port=None))

    async def bump(payload: Any, ctx: CallContext) -> Any:
        payload += 1
        return payload

    b.register("bump", bump, MethodOptions(serializer="numpy"))
    await a.connect("b", b.address)
    assert np.array_equal(await a.call("b", "bump", np.arange(10), serializer="numpy"), np.arange(1, 11))
