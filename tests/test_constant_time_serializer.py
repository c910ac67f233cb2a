"""A serializer with ``constant_time = True`` (``raw``: buffers passed through) encodes and decodes
large payloads on the event loop: a worker-thread hop would cost more than the work. Others still go
to the codec pool above ``offload_threshold``."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from node_comm import CallContext, MethodOptions, Node
from node_comm.serializer import Serializer
from node_comm_serializers import RawSerializer
from tests.conftest import make_config

THRESHOLD = 1024
BIG = b"x" * (8 * THRESHOLD)


class Recording(Serializer):
    """Bytes in, bytes out; records the thread of every encode and decode."""

    def __init__(self, name: str, constant_time: bool) -> None:
        self._name = name
        self.constant_time = constant_time  # type: ignore[misc]  # per instance, for the test
        self.threads: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    def serialize(self, obj: Any) -> bytes:
        self.threads.append(threading.current_thread().name)
        return bytes(obj)

    def deserialize(self, data: bytes) -> Any:
        self.threads.append(threading.current_thread().name)
        return bytes(data)


def test_raw_is_constant_time() -> None:
    assert RawSerializer.constant_time is True and Serializer.constant_time is False


@pytest.mark.parametrize("constant_time", [True, False])
async def test_large_payloads_stay_on_the_loop_only_for_constant_time(constant_time: bool) -> None:
    ser = Recording("rec", constant_time)
    a = Node("a", make_config("memory", "a", offload_threshold=THRESHOLD))
    b = Node("b", make_config("memory", "b", offload_threshold=THRESHOLD))
    for n in (a, b):
        n.serializers.register(ser)

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    b.register("echo", echo, MethodOptions(serializer="rec"))
    async with a, b:
        await a.connect("b")
        assert await a.call("b", "echo", BIG, serializer="rec", timeout=10) == BIG
    loop_thread = threading.current_thread().name
    assert len(ser.threads) == 4  # encode, decode, encode, decode
    if constant_time:
        assert set(ser.threads) == {loop_thread}
    else:
        assert loop_thread not in ser.threads
