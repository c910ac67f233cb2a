"""The ``raw`` serializer: bytes-like payloads travel untouched, over every transport."""

from __future__ import annotations

from typing import Any

import pytest

from node_comm import CallContext, MethodOptions, Node, SerializationError
from node_comm_serializers import RawSerializer

from .conftest import make_config


def test_raw_passes_bytes_like_through_without_copy() -> None:
    ser = RawSerializer()
    data = b"\x00\x01weights"
    assert ser.serialize(data) is data
    buf = bytearray(b"abc")
    assert ser.serialize(buf) is buf
    assert ser.deserialize(data) is data


@pytest.mark.parametrize("bad", [{"a": 1}, "text", 3, None])
def test_raw_refuses_what_is_not_bytes(bad: Any) -> None:
    with pytest.raises(TypeError, match="raw serializer takes bytes"):
        RawSerializer().serialize(bad)


async def test_raw_round_trip_of_a_chunked_payload(transport: str) -> None:
    # 3 MiB + 7: several chunks on gRPC (1 MiB chunks), one message in memory.
    payload = bytes(range(256)) * (3 * 4096) + b"tail123"
    seen: list[int] = []

    async def checksum(data: Any, ctx: CallContext) -> bytes:
        seen.append(len(data))
        return bytes(data[::-1])

    a = Node("a", make_config(transport, "a"))
    b = Node("b", make_config(transport, "b"))
    b.register("reverse", checksum, MethodOptions(serializer="raw"))
    async with a, b:
        await a.connect("b", b.address)
        result = await a.call("b", "reverse", payload, serializer="raw")
        assert bytes(result) == payload[::-1]
        assert seen == [len(payload)]
        with pytest.raises(SerializationError):
            await a.call("b", "reverse", {"not": "bytes"}, serializer="raw")
        assert seen == [len(payload)]  # nothing was sent
