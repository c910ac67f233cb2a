"""Decoding a peer's payload is bounded: a JSON or msgpack bomb is refused with RESOURCE_EXHAUSTED
before it is decoded, the node keeps serving, and legitimate deep or large payloads still work."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgpack
import pytest

from node_comm import (
    CallContext,
    ConfigError,
    DecodeLimits,
    ErrorCode,
    MethodOptions,
    Node,
    NodeConfig,
    PayloadTooLargeError,
    RemoteExecutionError,
    Serializer,
    config_from_dict,
)
from node_comm.serializer import StdlibJsonSerializer
from node_comm_serializers import JsonSerializer, MsgpackSerializer
from tests.conftest import make_config

LIMITS = DecodeLimits()
JSON_SERIALIZERS = [JsonSerializer(), StdlibJsonSerializer()]


def nested(depth: int) -> Any:
    value: Any = []
    for i in range(depth - 1):
        value = [value] if i % 2 else {"k": value}
    return value


def empty_lists_json(count: int) -> bytes:
    return b"[" + b"[]," * (count - 1) + b"[]]"


def empty_arrays_msgpack(count: int) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


class Passthrough(Serializer):
    """Sends bytes as they are under another serializer's name: lets a test put any bytes on the
    wire as ``json`` or ``msgpack``, as a hostile peer would."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def serialize(self, obj: Any) -> bytes:
        return obj if isinstance(obj, bytes) else msgpack.packb(obj)

    def deserialize(self, data: bytes) -> Any:
        return bytes(data)


# ------------------------------------------------------------------ serializers alone
@pytest.mark.parametrize("ser", JSON_SERIALIZERS, ids=lambda s: type(s).__name__)
def test_json_bomb_is_refused_before_decoding(ser: Serializer) -> None:
    bomb = empty_lists_json(LIMITS.max_containers + 1)
    t0 = time.perf_counter()
    with pytest.raises(PayloadTooLargeError, match="max_containers"):
        ser.deserialize_bounded(bomb, LIMITS)
    assert time.perf_counter() - t0 < 1.0  # a byte count, not a decode


@pytest.mark.parametrize("ser", JSON_SERIALIZERS, ids=lambda s: type(s).__name__)
def test_json_depth_limit_is_exact(ser: Serializer) -> None:
    ok = ser.serialize(nested(LIMITS.max_depth))
    assert ser.deserialize_bounded(ok, LIMITS) == nested(LIMITS.max_depth)
    with pytest.raises(PayloadTooLargeError, match="max_depth=128"):
        ser.deserialize_bounded(ser.serialize(nested(LIMITS.max_depth + 1)), LIMITS)


@pytest.mark.parametrize("ser", JSON_SERIALIZERS, ids=lambda s: type(s).__name__)
def test_json_brackets_inside_strings_do_not_count_as_nesting(ser: Serializer) -> None:
    # The byte scan cannot tell a "[" in a string from a list; the decoded value settles it.
    value = {"text": "[" * 500 + "{" * 500, "rows": [[i, "]" * 3] for i in range(200)]}
    assert ser.deserialize_bounded(ser.serialize(value), LIMITS) == value
    deep_with_strings = {"text": "[" * 500, "deep": nested(LIMITS.max_depth + 1)}
    with pytest.raises(PayloadTooLargeError, match="max_depth"):
        ser.deserialize_bounded(ser.serialize(deep_with_strings), LIMITS)


@pytest.mark.parametrize("ser", JSON_SERIALIZERS, ids=lambda s: type(s).__name__)
def test_json_legitimate_large_payloads_pass(ser: Serializer) -> None:
    weights = {"layer1": [[0.5] * 100 for _ in range(1000)], "layer2": list(range(300_000)), "round": 3}
    assert ser.deserialize_bounded(ser.serialize(weights), LIMITS) == weights
    few = DecodeLimits(max_depth=4, max_containers=3)
    assert ser.deserialize_bounded(b'{"a": [1, {"b": 2}]}', few) == {"a": [1, {"b": 2}]}
    with pytest.raises(PayloadTooLargeError):
        ser.deserialize_bounded(b'[{"a": [1, {"b": 2}]}, "padding to pass the short-payload skip"]', few)


def test_msgpack_bomb_is_refused_and_large_flat_payloads_pass() -> None:
    ser = MsgpackSerializer()
    with pytest.raises(PayloadTooLargeError, match="max_containers"):
        ser.deserialize_bounded(empty_arrays_msgpack(3 * LIMITS.max_containers), LIMITS)
    legit = {"weights": b"\x90" * (2 * LIMITS.max_containers), "flat": list(range(2 * LIMITS.max_containers))}
    assert ser.deserialize_bounded(ser.serialize(legit), LIMITS) == legit
    assert ser.deserialize_bounded(ser.serialize(nested(300)), LIMITS) == nested(300)


def test_decode_limits_are_validated_and_load_from_yaml() -> None:
    with pytest.raises(ConfigError, match=r"decode_limits\.max_depth"):
        DecodeLimits(max_depth=0)
    with pytest.raises(ConfigError, match=r"decode_limits\.max_containers"):
        DecodeLimits(max_containers=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="offload_threshold"):
        NodeConfig(node_id="n", offload_threshold=-1)
    with pytest.raises(ConfigError, match="offload_threshold"):
        NodeConfig(node_id="n", offload_threshold=1.5)  # type: ignore[arg-type]
    cfg = config_from_dict(
        {"node_id": "n", "offload_threshold": "0", "decode_limits": {"max_depth": 16, "max_containers": 10}}
    )
    assert cfg.offload_threshold == 0
    assert cfg.decode_limits == DecodeLimits(max_depth=16, max_containers=10)
    with pytest.raises(ConfigError, match=r"decode_limits\.max_dept"):
        config_from_dict({"node_id": "n", "decode_limits": {"max_dept": 16}})


# ------------------------------------------------------------------ between nodes
@pytest.fixture
async def nodes(transport: str) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    made: list[Node] = []

    async def make(node_id: str, **overrides: Any) -> Node:
        node = Node(node_id, make_config(transport, node_id, **overrides))
        await node.start()
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop(grace=0)


async def _served_pair(nodes: Callable[..., Awaitable[Node]]) -> tuple[Node, Node, list[Any]]:
    a, b = await nodes("a"), await nodes("b")
    ran: list[Any] = []

    async def echo(payload: Any, ctx: CallContext) -> Any:
        ran.append(type(payload).__name__)
        return payload

    b.register("echo", echo)
    b.register("echo_msgpack", echo, MethodOptions(serializer="msgpack"))
    await a.connect("b", b.address)
    return a, b, ran


@pytest.mark.parametrize(
    ("serializer", "method", "bomb"),
    [
        ("json", "echo", empty_lists_json(LIMITS.max_containers + 100)),
        ("msgpack", "echo_msgpack", empty_arrays_msgpack(LIMITS.max_containers + 100)),
    ],
)
async def test_a_bomb_is_refused_with_resource_exhausted_and_the_node_keeps_serving(
    nodes, serializer: str, method: str, bomb: bytes
) -> None:
    a, _b, ran = await _served_pair(nodes)
    a.serializers.register(Passthrough(serializer))  # a puts the bomb on the wire as it is
    with pytest.raises(RemoteExecutionError) as err:
        await a.call("b", method, bomb, serializer=serializer, timeout=30)
    assert err.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert "max_containers" in str(err.value)
    assert ran == []  # refused before the handler
    a.serializers.register(MsgpackSerializer() if serializer == "msgpack" else JsonSerializer())
    assert await a.call("b", method, [1], serializer=serializer) == [1]
    assert ran == ["list"]


@pytest.mark.parametrize("transport", ["memory"])
async def test_a_60mib_json_bomb_is_refused_fast(nodes) -> None:
    # 20 million empty lists: decoded, 2 GB and 11 s; refused from a byte count instead.
    a, _b, ran = await _served_pair(nodes)
    a.serializers.register(Passthrough("json"))
    bomb = empty_lists_json(20_000_000)
    t0 = time.perf_counter()
    with pytest.raises(RemoteExecutionError) as err:
        await a.call("b", "echo", bomb, timeout=30)
    assert err.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert time.perf_counter() - t0 < 3.0
    assert ran == []


async def test_a_result_past_the_limits_is_refused_by_the_caller(nodes) -> None:
    a, b, _ = await _served_pair(nodes)
    b.serializers.register(Passthrough("json"))  # b answers with bytes as they are
    bomb = empty_lists_json(LIMITS.max_containers + 100)

    async def bomber(payload: Any, ctx: CallContext) -> bytes:
        return bomb

    b.register("bomber", bomber)
    with pytest.raises(PayloadTooLargeError, match=r"result of b\.bomber") as err:
        await a.call("b", "bomber", None, timeout=30)
    assert err.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert await a.call("b", "echo", [2]) == [2]  # a still decodes b's sane answers


async def test_limits_come_from_the_receiving_nodes_config(nodes) -> None:
    a = await nodes("a")
    b = await nodes("b", decode_limits=DecodeLimits(max_depth=3, max_containers=1000))

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    b.register("echo", echo)
    await a.connect("b", b.address)
    assert await a.call("b", "echo", [[[1]]] + ["pad"] * 3) == [[[1]]] + ["pad"] * 3
    with pytest.raises(RemoteExecutionError) as err:
        await a.call("b", "echo", [[[[1]]]] + ["pad"] * 3)
    assert err.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert "decode_limits.max_depth=3" in str(err.value)
