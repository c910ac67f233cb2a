"""``pickle``: any Python object, between nodes that trust each other.

Never the default and never chosen by the wire alone: a node decodes pickle only for a method
registered with ``MethodOptions(serializer="pickle")``, and a caller only for a call it made with
``serializer="pickle"``; over a network transport only from authenticated peers.

Large buffers (numpy arrays, ``bytearray``, anything pickled through ``pickle.PickleBuffer``) go
out-of-band (pickle protocol 5): the payload is a small frame header, the pickle stream, then the
raw buffers, each aligned to 64 bytes::

    magic b"\\x00NCP" | u32 n | u64 len(stream) | n x u64 len(buffer) | n x u8 read-only | pad
    stream | pad | buffer 0 | pad | buffer 1 | ... | buffer n-1        (little-endian; pad to 64)

Encoding copies each buffer once (into the payload); decoding rebuilds the objects over slices of
the received payload, without a copy when the transport hands a writable buffer (gRPC reassembles
payloads above ``chunk_size`` in a ``bytearray``). An array that was writable on the sender is
writable on the receiver: over a read-only payload (``bytes``: small gRPC payloads, the memory
transport) its buffer is copied once, as in-band pickling always did. An object with no large
buffer is a plain pickle with no header, and plain pickles (older peers) decode as before.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from node_comm import SerializationError, Serializer

_MAGIC = b"\x00NCP"  # byte 0 is no pickle opcode: a plain pickle never starts with it
_HEAD = struct.Struct("<4sIQ")
_ALIGN = 64
#: Buffers smaller than this stay in the pickle stream (a header entry would cost more).
OUT_OF_BAND_MIN = 4096
_PAD = bytes(_ALIGN)


def _up(n: int) -> int:
    return (n + _ALIGN - 1) & -_ALIGN


class PickleSerializer(Serializer):
    """Pickle protocol 5, large buffers out-of-band (see the module's docstring for the frame)."""

    #: A class attribute, not a property: read on every call (a Python call less each time).
    name = "pickle"

    def serialize(self, obj: Any) -> bytes:
        parts = self.serialize_parts(obj)
        return parts[0] if len(parts) == 1 else b"".join(parts)  # type: ignore[return-value]  # the one copy

    def serialize_parts(self, obj: Any) -> list[bytes | memoryview]:
        """The payload as a list of buffers, ``b"".join(parts) == serialize(obj)``, without the copy:
        large buffers are views of the objects' own memory, valid until those objects change. For a
        transport that can send a list of buffers (scatter-gather)."""
        bufs: list[memoryview] = []

        def out_of_band(pb: pickle.PickleBuffer) -> bool:
            raw = pb.raw()  # a flat byte view, no copy (pickle only makes these for contiguous memory)
            if raw.nbytes < OUT_OF_BAND_MIN:
                return True  # in-band
            bufs.append(raw)
            return False

        stream = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
        if not bufs:
            return [stream]
        n = len(bufs)
        head = _HEAD.pack(_MAGIC, n, len(stream)) + struct.pack(f"<{n}Q", *(b.nbytes for b in bufs))
        head += bytes(b.readonly for b in bufs)
        parts: list[bytes | memoryview] = [head, _PAD[: _up(len(head)) - len(head)], stream]
        pos = _up(len(head)) + len(stream)
        for b in bufs:
            parts.append(_PAD[: _up(pos) - pos])
            parts.append(b)
            pos = _up(pos) + b.nbytes
        return parts

    def deserialize(self, data: bytes) -> Any:
        if data[:4] != _MAGIC:
            return pickle.loads(data)  # a plain pickle: no out-of-band buffers, or an older peer
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = view.nbytes
        if total < _HEAD.size:
            raise SerializationError(f"pickle frame of {total} bytes is shorter than its header")
        _, n, stream_len = _HEAD.unpack_from(view)
        table = _HEAD.size + 9 * n
        if table > total:
            raise SerializationError(f"pickle frame announces {n} buffers, more than its {total} bytes hold")
        lengths = struct.unpack_from(f"<{n}Q", view, _HEAD.size)
        readonly = view[_HEAD.size + 8 * n : table]
        pos = _up(table)
        stream = view[pos : pos + stream_len]
        pos += stream_len
        copy = view.readonly
        buffers: list[Any] = []
        for i, size in enumerate(lengths):
            pos = _up(pos)
            end = pos + size
            if end > total:
                raise SerializationError(f"pickle frame: buffer {i} of {size} bytes runs past the frame's end")
            buf = view[pos:end]
            if readonly[i]:
                buffers.append(buf.toreadonly())
            elif copy:  # was writable on the sender: a writable copy of a read-only payload
                buffers.append(bytearray(buf))
            else:
                buffers.append(buf)
            pos = end
        if pos != total or len(stream) != stream_len:
            raise SerializationError(f"pickle frame: its parts end at byte {pos}, the frame has {total}")
        return pickle.loads(stream, buffers=buffers)
