"""``raw``: the payload is already bytes (model weights from ``tensor.numpy().tobytes()``,
``torch.save`` into a buffer, a file's contents): sent as is, with no copy and no framing."""

from __future__ import annotations

from typing import Any

from node_comm import Serializer


class RawSerializer(Serializer):
    """Passes ``bytes``, ``bytearray`` and ``memoryview`` through untouched; anything else is
    refused (a :class:`~node_comm.SerializationError` at the caller). Decoding returns the received
    buffer itself (``bytes``, or a ``bytearray`` for a payload reassembled from chunks)."""

    constant_time = True  # no copy, no parse: large payloads need no worker thread

    #: A class attribute, not a property: read on every call (a Python call less each time).
    name = "raw"

    def serialize(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, (bytearray, memoryview)):
            return obj  # type: ignore[return-value]  # bytes-like: transports slice it, never copy
        raise TypeError(f"the raw serializer takes bytes, bytearray or memoryview, not {type(obj).__name__}")

    def deserialize(self, data: bytes) -> Any:
        return data
