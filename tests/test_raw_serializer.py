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


@pytest.mark.parametrize("size", [100, 100 * 1024, 3 * 1024 * 1024 + 7], ids=["small", "inline", "chunked"])
async def test_raw_round_trip(transport: str, size: int) -> None:
    # On gRPC: a protobuf-encoded frame, a payload appended verbatim to its frame (>= 16 KiB), and
    # several 1 MiB chunks; metadata and the deadline must survive each.
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    seen: list[int] = []

    async def checksum(data: Any, ctx: CallContext) -> bytes:
        seen.append(len(data))
        assert ctx.metadata == {"round": "7"}
        remaining = ctx.time_remaining()
        assert remaining is not None and 0 < remaining <= 20
        return bytes(data[::-1])

    a = Node("a", make_config(transport, "a"))
    b = Node("b", make_config(transport, "b"))
    b.register("reverse", checksum, MethodOptions(serializer="raw"))
    async with a, b:
        await a.connect("b", b.address)
        result = await a.call("b", "reverse", payload, serializer="raw", timeout=20, metadata={"round": "7"})
        assert bytes(result) == payload[::-1]
        assert seen == [len(payload)]
        with pytest.raises(SerializationError):
            await a.call("b", "reverse", {"not": "bytes"}, serializer="raw")
        assert seen == [len(payload)]  # nothing was sent
